"""The KL coefficient of the reward penalty: fixed, or adaptive towards a target KL.

What it is for: the policy loop shapes each response's reward as ``score − β·KL`` (per token,
:func:`starling_lib.losses.kl_penalized_rewards`). :class:`KLController` holds ``β``. Without a
target it is the fixed ``policy.kl_coef``. With ``policy.kl_target`` it is Ziegler et al.'s
adaptive controller ("Fine-Tuning Language Models from Human Preferences", arXiv 1909.08593,
Sec. 2.2), as in openai/lm-human-preferences, trl's former ``AdaptiveKLController`` and trlx:

    e_t     = clip((KL_t − KL_target) / KL_target, −0.2, 0.2)
    β_{t+1} = β_t · (1 + K_β · e_t),   K_β = n_t / horizon

where ``KL_t`` is the iteration's mean sequence KL ``Σ_t log π_old/π_init`` per response (the
log's ``kl``) and ``n_t`` the number of responses it was measured on (all processes), so the
horizon is counted in responses: β changes by at most ``±0.2·n_t/horizon`` per iteration, and it
takes about ``horizon`` responses of a steady error to move β by a factor ``e^{±0.2}``.

No tensors, no model: a float and its update rule; :meth:`state_dict` goes into checkpoints so a
resumed run continues with the β the interrupted one had reached.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


class KLController:
    """``value`` is β; :meth:`update` moves it after each iteration (a no-op when ``target`` is None)."""

    def __init__(self, init_kl_coef: float, target: float | None = None, horizon: int = 10000):
        if init_kl_coef < 0:
            raise ValueError(f"the initial KL coefficient must be >= 0, got {init_kl_coef}")
        if target is not None and not (target > 0 and math.isfinite(target)):
            raise ValueError(f"the KL target must be a positive number or None, got {target}")
        if horizon < 1:
            raise ValueError(f"the KL horizon must be >= 1 response, got {horizon}")
        self.value, self.target, self.horizon = float(init_kl_coef), target, int(horizon)

    @property
    def adaptive(self) -> bool:
        return self.target is not None

    def update(self, current_kl: float, n_steps: int) -> float:
        """β after an iteration whose mean KL was ``current_kl`` over ``n_steps`` responses; returns it."""
        if self.target is not None:
            error = min(max((current_kl - self.target) / self.target, -0.2), 0.2)  # e_t
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"kl_coef": self.value, "kl_target": self.target, "kl_horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``'s β. Target and horizon are settings: they must match this run's
        when either is adaptive; a fixed β stays the configured one."""
        if not self.adaptive and state.get("kl_target") is None:
            return
        for key, mine in (("kl_target", self.target), ("kl_horizon", self.horizon)):
            if state.get(key) != mine:
                raise ValueError(f"the checkpoint's KL controller has {key}={state.get(key)!r}, this run has "
                                 f"policy.{key}={mine!r}; resume with the same settings or a new output dir")
        self.value = float(state["kl_coef"])

    FILENAME = "kl_controller.json"

    def save(self, folder: Path) -> None:
        """Write the state into a checkpoint folder (atomically: a run killed meanwhile leaves none)."""
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (self.FILENAME + ".tmp")
        tmp.write_text(json.dumps(self.state_dict()) + "\n", encoding="utf-8")
        os.replace(tmp, folder / self.FILENAME)

    def restore(self, folder: Path) -> None:
        """Continue from a checkpoint folder's state (:meth:`load_state_dict`)."""
        path = folder / self.FILENAME
        if not path.is_file():
            if self.adaptive:
                raise ValueError(f"{folder}: no {self.FILENAME}, so no β to continue from; this run has "
                                 f"policy.kl_target={self.target}: resume with the checkpoint's settings or a new "
                                 "output dir")
            return
        self.load_state_dict(json.loads(path.read_text(encoding="utf-8")))
