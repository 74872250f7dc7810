"""What every ``starling`` command shares: the preset flags and the JSON printer.

``cli.py`` and ``cli_eval.py`` both import from here (never from each other's internals), so the
``--preset`` choices come from the preset registry in one place and every ``--json`` prints the
same strict JSON.
"""

from __future__ import annotations

import json
import math

from starling_lib.config import PRESETS


def _strict(value):
    """NaN / inf as ``null``, so ``--json`` output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def load_preset(name: str, overrides=()):
    """``get_preset(name, overrides)`` with its ``runtime.num_threads`` applied to this process
    (:func:`starling_lib.precision.apply_threads`): what every command runs with."""
    from starling_lib.config import get_preset
    from starling_lib.precision import apply_threads

    preset = get_preset(name, list(overrides))
    apply_threads(preset.runtime)
    return preset


def print_json(payload) -> None:
    """``payload`` as indented strict JSON (non-finite floats as ``null``, other objects as ``str``)."""
    print(json.dumps(_strict(payload), indent=2, default=str))


def add_preset_flag(cmd, default: str = "tiny") -> None:
    """``--preset`` with the registry's names (:data:`starling_lib.config.PRESETS`) as its choices."""
    cmd.add_argument("--preset", default=default, choices=list(PRESETS))


def add_common_flags(cmd, *, set_example: str = "eval.mt_bench_dir=shared",
                     json_help: str = "print a JSON report") -> None:
    """``--preset``, repeatable ``--set SECTION.FIELD=VALUE`` overrides, and ``--json``."""
    add_preset_flag(cmd)
    cmd.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                     help=f"override a preset field, e.g. --set {set_example} (repeatable)")
    cmd.add_argument("--json", action="store_true", help=json_help)
