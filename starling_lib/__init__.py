"""starling_lib: a small, tested companion to Starling-7B (Nectar, K-wise RMs, APA, evaluation).

Stages live in their own modules and import downward only:
data / models / losses / config at the bottom; judge, reward, policy above them;
bias and evaluation above those; cli and notebooks on top.
"""

import warnings

__version__ = "0.1.0"

# `datasets` imports tqdm.auto, which in a Jupyter kernel without ipywidgets warns on every import.
# Progress bars are switched off in notebooks anyway (plotting.start_notebook); keep outputs clean.
warnings.filterwarnings("ignore", message="IProgress not found")


def package_versions(packages) -> dict[str, str | None]:
    """Installed version of each distribution name (``None`` when not installed)."""
    import importlib.metadata as md

    versions = {}
    for package in packages:
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions
