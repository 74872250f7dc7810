"""Helper for tests/test_reward_train.py: a reward-model run that dies abruptly mid-training.

    python tests/rm_kill_script.py OUT_DIR KILL_AT_STEP OVERRIDE...

Trains on the smoke preset with the given ``section.field=value`` overrides and calls
``os._exit(137)`` (no cleanup, no final save, like SIGKILL) when the run reaches ``KILL_AT_STEP``.
"""

import os
import sys

from transformers import TrainerCallback

from starling_lib.config import get_preset
from starling_lib.reward.data import load_examples, split_by_prompt
from starling_lib.reward.train import train_reward_model


class DieAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os._exit(137)


def main() -> None:
    out, kill_at, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    preset = get_preset("smoke", overrides)
    train, held_out = split_by_prompt(load_examples(preset), preset.reward.eval_fraction, preset.runtime.seed)
    train_reward_model(preset, train, held_out, out, callbacks=[DieAt(kill_at)])
    sys.exit("the run finished: it should have died at step %d" % kill_at)


if __name__ == "__main__":
    main()
