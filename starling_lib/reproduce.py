"""Run the numbered notebooks headless with papermill: the engine of ``make reproduce``.

Each notebook ``notebooks/NN_name.ipynb`` is executed into the ignored ``runs/<preset>/`` folder
with its parameters cell set (``preset``, ``seed``, ``figures_dir``, ``shared_data_dir``); the
notebook itself writes figures and results through ``starling_lib.plotting``. A failure names
the notebook and the cell (its position in the source notebook, and its first line) and points
at the executed copy that holds the traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import paths

# The project's kernel: the notebooks' kernelspec names it, `make install` registers it in the venv
# (`ipykernel install --sys-prefix`, for JupyterLab), and reproduce() writes its own copy pointing at
# the running interpreter (below). tests/test_packaging.py keeps the three in step.
KERNEL_NAME = "starling-python3"
KERNEL_DISPLAY_NAME = "Python 3 (starling)"
_NUMBERED = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")


class ReproduceError(RuntimeError):
    """A notebook failed; the message names the notebook and cell."""

    def __init__(self, notebook: Path, message: str, executed: Path | None = None):
        self.notebook = notebook
        self.executed = executed
        super().__init__(message)


@dataclass
class NotebookRun:
    """One executed notebook."""

    notebook: str
    output: str
    seconds: float


def numbered_notebooks(only: Iterable[str] | str | None = None, folder: Path | None = None) -> list[Path]:
    """Notebooks ``NN_*.ipynb`` in order; ``only`` picks numbers, e.g. ``"01,03"`` or ``["01"]``."""
    folder = Path(folder or paths.NOTEBOOKS)
    found = sorted(p for p in folder.glob("*.ipynb") if _NUMBERED.match(p.name))
    if only is None:
        return found
    wanted = [w.strip().zfill(2) for w in (only.split(",") if isinstance(only, str) else only) if w.strip()]
    numbers = {p.name[:2] for p in found}
    missing = [w for w in wanted if w not in numbers]
    if missing:
        raise ReproduceError(folder, f"no notebook numbered {', '.join(missing)} in {folder} "
                                     f"(have: {', '.join(sorted(numbers)) or 'none'})")
    return [p for p in found if p.name[:2] in wanted]


def reproduce(preset: str = "tiny", only=None, seed: int = 0, figures_dir: Path | None = None,
              runs_dir: Path | None = None, shared_data_dir: Path | None = None,
              notebooks_dir: Path | None = None, log: Callable[[str], None] = print,
              overrides: Iterable[str] = ()) -> list[NotebookRun]:
    """Execute the numbered notebooks in order; stop at the first failure with a ReproduceError.

    ``overrides`` (``["bias.judge=api"]``) reach every notebook as its ``overrides`` parameter,
    which it passes to ``get_preset``; they are checked here first, so a typo fails before any
    notebook starts.
    """
    import papermill

    from .config import DEFAULT_PRESET, get_preset
    from .precision import thread_setting

    overrides = list(overrides)
    threads = thread_setting(get_preset(preset, overrides).runtime)  # ValueError naming a bad override
    notebooks = numbered_notebooks(only, notebooks_dir)
    out_dir = Path(runs_dir or paths.runs_dir()) / preset
    out_dir.mkdir(parents=True, exist_ok=True)
    if figures_dir is None and preset != DEFAULT_PRESET and "STARLING_FIGURES" not in os.environ:
        # figures/ holds the committed figures of the default preset: another preset's go beside its notebooks
        figures_dir = out_dir / "figures"
        log(f"figures of preset {preset} -> {figures_dir} (figures/ is the {DEFAULT_PRESET} preset's)")
    kernel_path = _write_kernelspec(out_dir.parent)
    ipc = _ipc_config(out_dir.parent)
    parameters = {
        "preset": preset,
        "seed": seed,
        "figures_dir": str(figures_dir) if figures_dir else None,
        "shared_data_dir": str(shared_data_dir) if shared_data_dir else None,
        "overrides": overrides,
    }
    # Notebooks put their caches (tiny assets, checkpoints) under paths.runs_dir(): the same root.
    # Our kernelspec comes first on JUPYTER_PATH, only while the notebooks run.
    existing = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p and p != kernel_path]
    environment = {"STARLING_RUNS": str(out_dir.parent), "JUPYTER_PATH": os.pathsep.join([kernel_path, *existing])}
    if threads is not None:  # runtime.num_threads: each kernel's torch starts with that many threads
        environment["OMP_NUM_THREADS"] = str(threads)
    runs = []
    for i, notebook in enumerate(notebooks, 1):
        output = out_dir / notebook.name
        log(f"[{i}/{len(notebooks)}] {notebook.stem} (preset {preset}) ...")
        start = time.perf_counter()
        try:
            with _environment(environment):
                papermill.execute_notebook(str(notebook), str(output), parameters=parameters,
                                           kernel_name=KERNEL_NAME, progress_bar=False, cwd=str(paths.ROOT),
                                           config=ipc)
        except papermill.PapermillExecutionError as err:
            raise ReproduceError(notebook, _describe_failure(notebook, output, err), output) from None
        except Exception as err:  # kernel died, notebook unreadable, missing parameters cell ...
            raise ReproduceError(notebook, f"notebook {notebook.name} could not run: "
                                           f"{type(err).__name__}: {err}", output) from None
        seconds = time.perf_counter() - start
        log(f"[{i}/{len(notebooks)}] {notebook.stem} done in {seconds:.1f} s -> {output}")
        runs.append(NotebookRun(notebook.name, str(output), seconds))
    return runs


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for the kernels started inside the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _ipc_config(base: Path):
    """Talk to the kernel over local Unix sockets under ``runs/`` instead of TCP on localhost: no
    open port, and no "running over TCP without encryption" warning on every notebook."""
    from traitlets.config import Config

    sockets = base / ".jupyter" / "ipc"
    if len(str(sockets)) > 80:  # a Unix socket path must fit in 108 bytes, "/kernel-<port>" included
        sockets = Path(tempfile.gettempdir()) / f"starling-ipc-{os.getuid()}"
    sockets.mkdir(parents=True, exist_ok=True)
    return Config({"KernelManager": {"transport": "ipc", "ip": str(sockets / "kernel")}})


def _describe_failure(notebook: Path, output: Path, err) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    failing = "".join(err.source) if isinstance(err.source, list) else (err.source or "")
    index = next((i for i, c in enumerate(cells) if "".join(c.get("source", "")) == failing), None)
    where = f"cell {index + 1} of {len(cells)}" if index is not None else f"execution count {err.exec_count}"
    first_line = failing.strip().splitlines()[0] if failing.strip() else ""
    return (f"notebook {notebook.name} failed at {where} ({first_line!r}): {err.ename}: {err.evalue}\n"
            f"  the executed copy with the full traceback: {output}")


def _write_kernelspec(base: Path) -> str:
    """Write a kernelspec for *this* interpreter under ``base/.jupyter``; return that folder for
    JUPYTER_PATH.

    Without it papermill resolves ``python3`` through the user's Jupyter folders, which may
    point at another Python without this package installed.
    """
    folder = base / ".jupyter" / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return str(base / ".jupyter")
