"""starling_lib: a small, tested companion to Starling-7B (Nectar, K-wise RMs, APA, evaluation).

Stages live in their own modules and import downward only. The layers, bottom to top: a module
imports from its own package and from lower layers, never from a higher layer or from another
package of its own layer, and no modules import each other in a circle (``tests/test_layering.py``
reads this table and checks every import in the package, the lazy ones inside functions included):

    layer 0: starling_lib, paths, rng, progress
    layer 1: config, precision
    layer 2: data, losses, parallel
    layer 3: models, judge
    layer 4: reward
    layer 5: policy, bias, judge_experiments
    layer 6: evaluation
    layer 7: plotting, reproduce, cli_common
    layer 8: cli_eval
    layer 9: cli

Notebooks sit on top of everything. A new module takes its place in this table.
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
