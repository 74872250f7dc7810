"""The papermill runner: parameters reach the notebook; failures name notebook and cell."""

import json

import nbformat
import pytest

from starling_lib.cli import main
from starling_lib.reproduce import ReproduceError, numbered_notebooks, reproduce

PARAMS = 'preset = "tiny"\nseed = 0\nfigures_dir = None\nshared_data_dir = None\noverrides = []'


def _notebook(path, *code_cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), params] + [nbformat.v4.new_code_cell(c) for c in code_cells]
    nbformat.write(nb, str(path))


@pytest.fixture()
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_ok.ipynb",
              "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
              "from starling_lib import plotting",
              "plotting.start_notebook('01_ok', preset=preset, seed=seed, figures_dir=figures_dir)",
              "fig, ax = plt.subplots(); ax.plot([1, 2]); plotting.save_fig(fig, '01_line')\n"
              "import torch\n"
              "plotting.save_results({'preset_seen': preset, 'seed_seen': seed, 'overrides_seen': overrides,\n"
              "                       'threads_seen': torch.get_num_threads()})")
    _notebook(folder / "02_fails.ipynb", "x = 1", "y = 2", "raise ValueError('boom in the third code cell')")
    (folder / "scratch.ipynb").write_text("{}")  # not numbered: never run
    return folder


def test_only_numbered_notebooks_in_order(notebooks):
    assert [p.name for p in numbered_notebooks(folder=notebooks)] == ["01_ok.ipynb", "02_fails.ipynb"]
    assert [p.name for p in numbered_notebooks("2", folder=notebooks)] == ["02_fails.ipynb"]
    with pytest.raises(ReproduceError, match="no notebook numbered 07"):
        numbered_notebooks("01,07", folder=notebooks)


@pytest.mark.slow
def test_parameters_reach_the_notebook_and_outputs_land_in_the_given_folders(notebooks, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    figures = runs / "smoke" / "figures"  # not figures/: that folder holds the committed tiny figures
    monkeypatch.delenv("STARLING_FIGURES", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    lines = []
    done = reproduce(preset="smoke", only="01", seed=5, runs_dir=runs,
                     notebooks_dir=notebooks, log=lines.append,
                     overrides=["bias.judge=simulated", "runtime.num_threads=1"])
    assert [r.notebook for r in done] == ["01_ok.ipynb"]
    results = json.loads((figures / "01_results.json").read_text())
    # runtime.num_threads reaches the kernel's torch (which would inherit OMP_NUM_THREADS=2 from here)
    assert results["results"] == {"preset_seen": "smoke", "seed_seen": 5, "threads_seen": 1,
                                  "overrides_seen": ["bias.judge=simulated", "runtime.num_threads=1"]}
    assert json.loads((figures / "MANIFEST.json").read_text())["01_line"]["preset"] == "smoke"
    assert (runs / "smoke" / "01_ok.ipynb").exists()
    assert lines[0] == f"figures of preset smoke -> {figures} (figures/ is the tiny preset's)"
    assert lines[1].startswith("[1/1] 01_ok") and "done in" in lines[-1]


def test_failure_names_notebook_cell_and_error(notebooks, tmp_path):
    with pytest.raises(ReproduceError) as info:
        reproduce(preset="smoke", only="02", figures_dir=tmp_path / "f", runs_dir=tmp_path / "r",
                  notebooks_dir=notebooks, log=lambda _: None)
    message = str(info.value)
    # markdown, parameters, x, y, raise: the failing cell is the 5th of 5 in the source notebook.
    assert "02_fails.ipynb failed at cell 5 of 5" in message
    assert "ValueError: boom in the third code cell" in message
    assert str(tmp_path / "r" / "smoke" / "02_fails.ipynb") in message


def test_cli_reports_failure_without_traceback(capsys):
    assert main(["reproduce", "--preset", "smoke", "--only", "99"]) == 1
    err = capsys.readouterr().err
    assert "starling: error: no notebook numbered 99" in err and "Traceback" not in err


def test_a_bad_override_fails_before_any_notebook_runs(notebooks, tmp_path, capsys):
    with pytest.raises(ValueError, match="BiasConfig has no field 'jugde'"):
        reproduce(preset="smoke", only="01", runs_dir=tmp_path / "r", notebooks_dir=notebooks,
                  log=lambda _: None, overrides=["bias.jugde=api"])
    assert not (tmp_path / "r" / "smoke" / "01_ok.ipynb").exists()
    assert main(["reproduce", "--preset", "smoke", "--only", "00", "--set", "bias.n_prompts=many"]) == 1
    err = capsys.readouterr().err
    assert "starling: error:" in err and "cannot read 'many' as int" in err and "Traceback" not in err
