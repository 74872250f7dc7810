"""Helper for tests/test_policy_train.py: an APA run on the smoke preset, optionally killed abruptly.

    python tests/apa_kill_script.py OUT_DIR KILL_AFTER_ITERATION [--resume] OVERRIDE...
    python tests/apa_kill_script.py --whole-then-resume WHOLE_DIR KILLED_DIR OVERRIDE...

``KILL_AFTER_ITERATION`` < 0 runs to the end. Otherwise ``os._exit(137)`` (no cleanup, no final
save, like SIGKILL) right after that iteration is logged. Under ``torchrun`` every process runs this.
``--whole-then-resume`` runs the uninterrupted run into ``WHOLE_DIR`` and then resumes the killed
run in ``KILLED_DIR``, one after the other in this one process (an interpreter start saved; the two
runs still share nothing but the code: each builds its models from the preset's seeds).
"""

import json
import os
import sys

from starling_lib.config import get_preset
from starling_lib.policy.pipeline import load_policy, policy_prompts
from starling_lib.policy.train import train_policy
from starling_lib.reward.train import build_backbone


def main() -> None:
    if sys.argv[1] == "--whole-then-resume":
        whole, killed, overrides = sys.argv[2], sys.argv[3], sys.argv[4:]
        run(whole, -1, False, overrides)
        run(killed, -1, True, overrides)
        return
    rest = sys.argv[3:]
    run(sys.argv[1], int(sys.argv[2]), "--resume" in rest, [a for a in rest if a != "--resume"])


def run(out: str, kill_after: int, resume: bool, overrides: list[str]) -> None:
    preset = get_preset("smoke", overrides)
    policy, tokenizer = load_policy(preset)
    reward, reward_tokenizer = build_backbone(preset)
    prompts, gold = policy_prompts(preset)

    def die(iteration, record):
        if iteration == kill_after:
            os._exit(137)

    run = train_policy(preset, prompts, policy, tokenizer, reward, reward_tokenizer, out, gold_fn=gold,
                       resume=resume, start_model="smoke-tiny-policy", on_iteration=die)
    # Each process writes what its weights add up to: processes in sync write the same numbers.
    digest = [float(p.detach().double().sum()) for p in run.model.parameters() if p.requires_grad]
    with open(os.path.join(out, f"digest-rank{os.environ.get('RANK', '0')}.json"), "w") as f:
        json.dump(digest, f)
    if kill_after >= 0:
        sys.exit("the run finished: it should have died after iteration %d" % kill_after)


if __name__ == "__main__":
    main()
