"""Every numbered notebook runs headless on the smoke preset and writes its figures and results.

The notebooks write into temporary folders here, so the committed tiny-preset figures are never
touched by the test suite.
"""

import json

import pytest

from starling_lib.paths import shared_data
from starling_lib.reproduce import numbered_notebooks, reproduce

pytestmark = pytest.mark.slow


def run_notebook(tmp_path, notebook, shared_data_dir=None):
    figures = tmp_path / "figures"
    runs = reproduce("smoke", only=notebook.name[:2], figures_dir=figures, runs_dir=tmp_path / "runs",
                     shared_data_dir=shared_data_dir, log=lambda line: None)
    return figures, runs


@pytest.mark.parametrize("notebook", numbered_notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_on_smoke_preset(tmp_path, notebook):
    if notebook.name.startswith("05_") and None in (shared_data("starling_rm_benchmarks"), shared_data("starling_ratings")):
        pytest.skip("notebook 05 needs ../shared/data/starling_rm_benchmarks and starling_ratings")
    number = notebook.name[:2]
    no_shared = tmp_path / "no_shared_data"  # hides ../shared/data even where it exists
    no_shared.mkdir()
    # The tour runs as a newcomer without the published data meets it (the browser test runs it with the data).
    figures, runs = run_notebook(tmp_path, notebook, shared_data_dir=no_shared if number == "00" else None)
    assert [run.notebook for run in runs] == [notebook.name]

    results = json.loads((figures / f"{number}_results.json").read_text())
    assert (results["notebook"], results["preset"], results["seed"]) == (notebook.stem, "smoke", 0)
    assert results["results"], "a notebook must report its headline numbers"

    manifest = json.loads((figures / "MANIFEST.json").read_text())
    assert manifest, "a notebook must save at least one figure"
    for name, entry in manifest.items():
        assert name.startswith(f"{number}_") and entry["preset"] == "smoke"
        for file in entry["files"]:
            assert (figures / file).stat().st_size > 1000, f"{file} is empty"

    executed = json.loads((tmp_path / "runs" / "smoke" / notebook.name).read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    if number == "00":  # without shared data the tour falls back to the tiny world
        tour = results["results"]
        assert tour["rating_logs"] == {"rows": 0, "valid": 0, "per_strategy": None}
        assert tour["tiny_world"]["prompts"] == 60
        assert tour["parameters"]["policy"] > 0


def test_positional_bias_on_an_api_endpoint_keeps_the_key_out_of_every_file(tmp_path, monkeypatch):
    """Notebook 01 with ``--set bias.judge=api``, the endpoint and key from the environment (a fake
    server process with the simulated judge), and no rating logs: the live study runs over HTTP,
    part 1 is skipped, and the key reaches the server but no cache, log, output or figure."""
    import hashlib
    import os
    import subprocess
    import sys
    import urllib.request

    secret = "sk-starling-test-" + "9f3c" * 8
    server = subprocess.Popen([sys.executable, "-m", "starling_lib.judge.server", "--judge", "simulated"],
                              stdout=subprocess.PIPE, text=True)
    try:
        monkeypatch.setenv("STARLING_JUDGE_BASE_URL", server.stdout.readline().strip())
        monkeypatch.setenv("OPENAI_API_KEY", secret)
        notebook = next(p for p in numbered_notebooks() if p.name.startswith("01_"))
        empty = tmp_path / "no_shared_data"
        empty.mkdir()
        figures = tmp_path / "figures"
        reproduce("smoke", only="01", figures_dir=figures, runs_dir=tmp_path / "runs", shared_data_dir=empty,
                  overrides=["bias.judge=api"], log=lambda line: None)
        base = os.environ["STARLING_JUDGE_BASE_URL"].removesuffix("/v1")
        with urllib.request.urlopen(f"{base}/_stats") as response:
            seen = json.loads(response.read())["authorization_sha256"]
    finally:
        server.terminate()
        server.wait(timeout=10)
    results = json.loads((figures / "01_results.json").read_text())["results"]
    assert results["real_logs"] is None
    live = results["live_tinyworld"]
    assert live["judge"] == "api" and live["usage"]["requests_sent"] >= 6 * live["n_prompts"]
    assert all(status.get("ok", 0) == live["n_prompts"] for status in live["status"].values())
    fingerprint = hashlib.sha256(f"Bearer {secret}".encode()).hexdigest()[:16]
    assert seen == {fingerprint: live["usage"]["requests_sent"]}  # the key did travel, over HTTP only
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.startswith("cache.sqlite") for p in files), "the judge cache should be under runs/"
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"API key leaked into {path}"
