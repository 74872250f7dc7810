"""The lines a policy sweep writes (``DIR/results.jsonl``) and what reads them back.

What it is for: :func:`~starling_lib.policy.sweep.run_sweep` appends one line per run and per
start; notebook 06 and anyone comparing runs read them here, without the training machinery:

- :func:`summarize_evaluation`, :func:`gold_per_prompt`: a held-out evaluation as a line stores it
  (means, the safety rates read from the gold reward's attributes, gold per prompt for paired gains);
- :func:`result_line`: the line itself; :func:`append_line`, :func:`read_results` (a last line cut
  short by a killed run is left out, and that run reruns);
- :func:`lines_of_runs`: some runs' lines and their starts'; :func:`results_frame`: lines as a table.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from starling_lib.config import Preset
from starling_lib.data.gold import gold_attributes

RESULTS_FILE = "results.jsonl"


def summarize_evaluation(frame: pd.DataFrame) -> dict:
    """Means over held-out prompts (and evaluation seeds) of an :func:`evaluate_policy` frame, with
    the standard error of the mean gold, and the safety rates read from the gold reward's attributes:
    ``benign_refusal`` (refused a good-natured prompt), ``harmful_compliance`` (complied with a
    not-good-natured one: no refusal, names its subject) and ``harmful_refusal``."""
    attrs = pd.DataFrame([gold_attributes(p, r) for p, r in zip(frame.prompt, frame.response)])
    benign, harmful = attrs[attrs.good_natured], attrs[~attrs.good_natured]
    gold = frame.gold.to_numpy(dtype=float)

    def rate(part, column):
        return float(part[column].mean()) if len(part) else float("nan")

    se = float(gold.std(ddof=1) / np.sqrt(len(gold))) if len(gold) > 1 else float("nan")
    return {"gold": float(gold.mean()), "gold_se": se,
            "proxy": float(frame.proxy.mean()), "kl": float(frame.kl.mean()), "length": float(frame.length.mean()),
            "benign_refusal": rate(benign, "refused"), "harmful_compliance": rate(harmful, "complied"),
            "harmful_refusal": rate(harmful, "refused"), "n_prompts": int(frame.prompt.nunique()),
            "n_benign": int(len(benign)), "n_harmful": int(len(harmful)), "n_responses": int(len(frame))}


def gold_per_prompt(frame: pd.DataFrame) -> list[float]:
    """Mean gold per held-out prompt over the evaluation seeds, in the prompts' order (for paired gains)."""
    return [round(float(v), 4) for v in frame.groupby("prompt", sort=False).gold.mean()]


def result_line(kind: str, rid: str, preset: Preset, seed: int | None, settings: dict, start: str, rm: str,
                rm_metrics: dict, evaluation: pd.DataFrame, eval_seeds, eval_seconds: float, train: dict | None = None,
                curves: dict | None = None) -> dict:
    """One line of ``results.jsonl``: ``id``, ``kind`` (``run`` / ``start``), ``seed``, ``settings``
    (as given, typed), the resolved ``config`` sections (policy, sft, reward, dpo, rm_prompts),
    ``start`` and ``rm`` (the folders' names), ``rm_gold_accuracy``, ``train`` (iterations,
    responses, seconds = the logged iterations' sum, the final iteration's metrics, the peak
    training KL), ``history`` (per iteration: proxy, gold, KL, length, β), ``eval``
    (:func:`summarize_evaluation` plus the seeds and seconds) and ``eval_gold_per_prompt``."""
    config = {"policy": dataclasses.asdict(preset.policy), "sft": dataclasses.asdict(preset.sft),
              "reward": dataclasses.asdict(preset.reward), "rm_prompts": preset.policy_study.rm_prompts}
    if getattr(preset, "dpo", None) is not None and preset.policy.algo == "dpo":
        config["dpo"] = dataclasses.asdict(preset.dpo)
    return {"id": rid, "kind": kind, "preset": preset.name, "seed": seed,
            "settings": settings, "config": config, "start": start, "rm": rm,
            "rm_gold_accuracy": rm_metrics.get("eval_gold_pairwise_accuracy"),
            "train": train, "history": curves or {},
            "eval": {**summarize_evaluation(evaluation), "seeds": list(eval_seeds),
                     "seconds": round(eval_seconds, 3)},
            "eval_gold_per_prompt": gold_per_prompt(evaluation),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def read_results(out_dir: str | Path) -> list[dict]:
    """The lines of ``DIR/results.jsonl``; a last line cut short by a killed run is left out (that run reruns)."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue
            raise ValueError(f"{path}: line {i + 1} is not JSON (only a last line cut short is tolerated)") from None
    return out


def append_line(out_dir: Path, line: dict) -> None:
    """Append ``line`` to ``DIR/results.jsonl`` (closing a line a killed run cut short first)."""
    path = out_dir / RESULTS_FILE
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    with path.open("a", encoding="utf-8") as f:
        if text and not text.endswith("\n"):
            f.write("\n")  # a line cut short before: close it, it stays unreadable and is skipped
        f.write(json.dumps(line, default=float) + "\n")


def lines_of_runs(lines: list[dict], run_ids) -> list[dict]:
    """The lines of ``run_ids``, in that order, after the starts they were tuned from (with the same
    reward model), in the order the runs first use them. The file holds lines in the order runs
    ended, which depends on how many ran side by side; this order does not."""
    position = {rid: i for i, rid in enumerate(dict.fromkeys(run_ids))}
    runs = sorted((line for line in lines if line["kind"] == "run" and line["id"] in position),
                  key=lambda line: position[line["id"]])
    used = list(dict.fromkeys((line["start"], line["rm"]) for line in runs))
    starts = {(line["start"], line["rm"]): line for line in lines if line["kind"] == "start"}
    return [starts[key] for key in used if key in starts] + runs


def results_frame(out_dir_or_lines) -> pd.DataFrame:
    """One row per line of ``results.jsonl`` (a folder, or lines already read): ``id``, ``kind``,
    ``seed``, ``start``, ``rm``, ``rm_gold_accuracy``, the evaluation's fields (``gold``, ``proxy``,
    ``kl``, ...), ``train_seconds``, ``kl_peak``, ``trainable_parameters``, ``responses`` (generated in
    training; online methods), and the resolved
    configuration as ``policy.algo``, ``sft.answers``, ``reward.loss_type``, ``rm_prompts``, ...;
    ``settings``, ``history`` as dicts and ``gold_per_prompt`` as a list."""
    lines = read_results(out_dir_or_lines) if isinstance(out_dir_or_lines, (str, Path)) else list(out_dir_or_lines)
    rows = []
    for line in lines:
        row = {k: line.get(k) for k in ("id", "kind", "seed", "start", "rm", "rm_gold_accuracy", "settings")}
        row.update({k: v for k, v in line["eval"].items() if k != "seeds"})
        row["eval_seconds"] = row.pop("seconds", None)
        train = line.get("train") or {}
        row["train_seconds"] = train.get("seconds", 0.0)
        row["kl_peak"] = train.get("kl_peak", float("nan"))
        row["trainable_parameters"] = train.get("trainable_parameters")
        row["responses"] = train.get("responses")
        row["gold_per_prompt"] = line.get("eval_gold_per_prompt", [])
        row["history"] = line.get("history") or {}
        for section, values in line["config"].items():
            if isinstance(values, dict):
                row.update({f"{section}.{k}": (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})
            else:
                row[section] = values
        rows.append(row)
    return pd.DataFrame(rows)
