"""JupyterLab in a real browser: what a user sees after `make lab`.

`jupyter lab` starts on 127.0.0.1 (a free port, a token); headless Chromium (Debian's `chromium`
and `chromium-driver`, driven by selenium) opens notebook 00 and runs all its cells through the
menu, on the smoke preset. The notebook must open on the project's kernel, show its figures as
images, and show no error; a screenshot goes to ``runs/lab_browser/``. Skips, saying why, where
Chromium or its driver cannot be had (`.ci/run` installs them).

The preset is set the way papermill sets it: the served copy of the notebook has its
``parameters`` cell's values replaced (``preset = "smoke"``, figures into a temporary folder), so
neither the notebook nor the committed figures change.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fake_server import free_port
from starling_lib.paths import ROOT, shared_data
from starling_lib.reproduce import KERNEL_DISPLAY_NAME, KERNEL_NAME, numbered_notebooks

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]
RUN_TIMEOUT_S = 240


def _browser_or_skip():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra has it)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("Chromium or its driver is not installed (Debian: apt-get install chromium chromium-driver; "
                    ".ci/run does this)")
    return webdriver, chromium, driver


def _smoke_copy(notebook: Path, folder: Path, figures: Path) -> Path:
    """The notebook with its parameters cell set to the smoke preset and a temporary figures folder."""
    nb = json.loads(notebook.read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    params["source"] = [f"preset = {'smoke'!r}\n", "seed = 0\n", f"figures_dir = {str(figures)!r}\n",
                        "shared_data_dir = None\n", "overrides = []\n"]
    copy = folder / notebook.name
    copy.write_text(json.dumps(nb, indent=1))
    return copy


def _wait_for_server(url: str, server: subprocess.Popen, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"jupyter lab exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"jupyter lab did not answer at {url} within {timeout:.0f} s")


def test_notebook_00_runs_in_jupyterlab_in_a_real_browser(tmp_path):
    webdriver, chromium, driver_path = _browser_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.perf_counter()
    tour = next(p for p in numbered_notebooks() if p.name.startswith("00_"))
    stored = tour.read_text()
    served = tmp_path / "notebooks"
    served.mkdir()
    copy = _smoke_copy(tour, served, tmp_path / "figures")
    port, token = free_port(), os.urandom(16).hex()
    env = {**os.environ, "STARLING_RUNS": str(tmp_path / "runs"), "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    env.pop("MPLBACKEND", None)  # the suite's Agg would hide figures; the kernel picks the inline backend
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={served}",
               "--ServerApp.port_retries=0", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"] + (["--allow-root"] if os.getuid() == 0 else [])
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    browser = None
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(f"{base}/api/status?token={token}", server)
        browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
        browser.get(f"{base}/lab/tree/{copy.name}?token={token}")
        wait = WebDriverWait(browser, 90)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
        kernel = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-KernelName")))
        wait.until(lambda b: (kernel.get_attribute("textContent") or "").strip() == KERNEL_DISPLAY_NAME)

        def menu(label, command):  # the menus a user clicks: e.g. Run -> Run All Cells
            browser.find_element(By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and text()='{label}']").click()
            wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f"li.lm-Menu-item[data-command='{command}']"))).click()

        def text(element):  # textContent: JupyterLab may not paint cells outside the window
            return (element.get_attribute("textContent") or "").strip()

        def finished(b):  # every code cell shows an execution count: "[n]:", not "[*]:" or "[ ]:"
            prompts = [text(p) for p in b.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")]
            return bool(prompts) and all(p[1:-2].isdigit() for p in prompts)

        menu("Run", "runmenu:run-all")
        WebDriverWait(browser, RUN_TIMEOUT_S, poll_frequency=1).until(finished)
        seconds = time.perf_counter() - started

        images = browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='image/png'] img")
        shown_errors = [text(e)[:300] for e in browser.find_elements(
            By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            if "Traceback" in text(e) or "Error:" in text(e)]
        checks = [text(e) for e in browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
                  if text(e).startswith(("PASS ", "FAIL "))]
        shot = ROOT / "runs" / "lab_browser" / "00_tour.png"  # kept for a human to look at (the tests' runs folder is temporary)
        shot.parent.mkdir(parents=True, exist_ok=True)
        for button in browser.find_elements(By.XPATH, "//div[contains(@class,'Toastify')]//button[text()='No']"):
            button.click()  # "get notified about official Jupyter news?": not in the picture
        for _ in range(2 if images else 0):  # the second time, once cells above have been laid out
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", images[-1])
            time.sleep(1)
        browser.save_screenshot(str(shot))
        menu("File", "docmanager:save")  # what the browser shows, as the notebook file holds it
        wait.until(lambda b: any(c.get("outputs") for c in json.loads(copy.read_text())["cells"]))
        print(f"\nnotebook 00 in JupyterLab + headless Chromium: {seconds:.1f} s, screenshot {shot}")

        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=10) as response:
            sessions = json.load(response)
        assert [s["kernel"]["name"] for s in sessions] == [KERNEL_NAME]
        assert text(kernel) == KERNEL_DISPLAY_NAME
        assert not shown_errors, shown_errors
        saved = json.loads(copy.read_text())
        assert not [o for c in saved["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert checks and all(line.startswith("PASS ") for line in "\n".join(checks).splitlines()), checks
        assert len(images) >= 1 and all(img.size["width"] > 100 for img in images)
        assert (tmp_path / "figures" / "00_tinyworld_gold_by_model.png").is_file()
        assert tour.read_text() == stored  # the stored notebook is untouched
        if shared_data("starling_ratings") is not None:  # the tour reads every published rating row
            logs = json.loads((tmp_path / "figures" / "00_results.json").read_text())["results"]["rating_logs"]
            assert logs["rows"] == logs["valid"] == 1143 and sum(logs["per_strategy"].values()) == 1143
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
