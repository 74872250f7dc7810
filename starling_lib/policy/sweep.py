"""Policy-tuning sweeps: a grid of settings × seeds, one JSON line per run (``starling policy sweep``).

What it is for: the blog's claims about policy tuning (which method, which reward model, which
parameters to train) need many runs from one start, each scored the same way; a grid too heavy for
a notebook runs here, resumable, and notebook 06 reads its ``results.jsonl``.

1. **Grid** (:func:`expand_grid`): each ``--grid`` is an axis, ``section.field=v1,v2`` (one field)
   or ``section.a,section.b=a1:b1,a2:b2`` (fields that move together, e.g. an algorithm with its
   own KL coefficient); runs are the cartesian product of the axes, times the seeds. A run's
   settings are the ``--set`` overrides, then its grid point, applied to the preset with the
   preset's own type checks (:func:`~starling_lib.config.apply_override`), every run checked before
   any trains. A notebook may list its runs instead (``points``: one dict of settings per run).
2. **One split, one evaluation.** The tiny world is split once, from the preset and ``--set``
   (:func:`~starling_lib.policy.pipeline.split_world`); grid axes may not move it (``world.*``,
   ``tokenizer.*``, ``data.*``, the split's sizes), except that a smaller ``sft.n_prompts`` or
   ``policy_study.rm_prompts`` trains on the *first* rows of its part. So every run tunes on the
   same RL prompts and is evaluated on the same held-out prompts with the same sampling seeds
   (``eval_seeds``), against the start it tuned from (KL) and the gold reward.
3. **Starts and reward models, trained once.** The SFT start and the proxy reward model of a run
   are decided by its ``sft`` / ``policy_model`` and ``reward`` / ``reward_model`` /
   ``policy_study.rm_prompts`` settings: each distinct one is trained once into ``DIR/sft-<key>``
   or ``DIR/rm-<key>`` and reused (a folder with a saved model is loaded, not retrained). A given
   folder (``sft_dir``, ``rm_dir``: any saved SFT / reward-model run, e.g. notebook 03's) stands for
   the preset's own SFT / reward settings; runs whose settings differ train theirs into ``DIR``.
   Starts and reward models train with the sweep's seed (``runtime.seed`` of the preset and
   ``--set``), not the run's. ``sft.continue_start=true`` trains a later stage of the sweep's own
   start instead of a new one (with ``sft.answers=best``: the stand-in for offline preference
   training). Each start is evaluated once per reward model, as a ``"kind": "start"`` line.
4. **Runs**: ``policy.algo`` = ``apa`` / ``ppo`` / ``awr`` / ... through
   :func:`~starling_lib.policy.train.train_policy` in ``DIR/runs/<id>/``; ``dpo`` through
   :func:`~starling_lib.policy.dpo.train_dpo` on preference pairs of the RL prompts' rankings
   (``preset.dpo``). After training: the held-out evaluation, one line appended to
   ``DIR/results.jsonl`` (:func:`~starling_lib.policy.sweep_results.result_line` lists its fields;
   :mod:`~starling_lib.policy.sweep_results` reads them back). Once the starts and reward models
   exist, the runs and the starts' evaluations go side by side in worker processes
   (``runtime.parallel_runs``, :mod:`starling_lib.parallel`); each line is appended as its run ends.
5. **Resume**: a run whose line is in ``results.jsonl`` is skipped; a run without one resumes from
   its latest checkpoint (``train_policy(resume=True)``: a finished run's last checkpoint is
   loaded and only evaluated again). ``DIR/sweep.json`` records the preset, the evaluation seeds and
   a fingerprint of the split; a later sweep into ``DIR`` must agree with it.

A run's id is a hash of the preset name, its settings (as the preset reads them back, so
``0.10`` and ``0.1`` are one run; those equal to the preset's own left out, so naming a default
changes nothing), its seed and any given start / reward-model folder (with when it was saved).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from starling_lib.config import Preset, apply_override, get_preset
from starling_lib.data.gold import gold_reward
from starling_lib.parallel import map_runs, workers_for
from starling_lib.policy.sweep_results import RESULTS_FILE, append_line, read_results, result_line

MANIFEST_FILE = "sweep.json"
DEFAULT_EVAL_SEEDS = (1000,)
# Grid axes that would move the split (so the held-out prompts) or the tiny assets: --set only.
SPLIT_FIELDS = ("world.", "tokenizer.", "data.", "policy_study.world_prompts", "policy_study.eval_prompts",
                "runtime.seed")
ASSET_RUNTIME = ("device", "dtype", "bf16")  # the runtime fields a trained start or reward model depends on
HISTORY_KEYS = ("proxy_reward", "gold_reward", "kl", "response_length", "kl_coef")


# ----------------------------------------------------------------------------------------------
# 1. The grid

@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its settings (``section.field`` -> value as given), in order, and its seed."""

    settings: tuple[tuple[str, str], ...]
    seed: int

    @property
    def overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.settings]


def parse_axis(spec: str) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """``'policy.algo=apa,ppo'`` -> ``(('policy.algo',), [('apa',), ('ppo',)])``;
    ``'policy.algo,policy.kl_coef=apa:0,ppo:0.05'`` -> two fields whose values move together."""
    keys, sep, raw = spec.partition("=")
    fields = tuple(k.strip() for k in keys.split(",") if k.strip())
    if not sep or not fields or any("." not in k for k in fields):
        raise ValueError(f"--grid {spec!r} must look like section.field=v1,v2 (or section.a,section.b=a1:b1,a2:b2)")
    values = [tuple(part.strip() for part in item.split(":")) if len(fields) > 1 else (item.strip(),)
              for item in raw.split(",") if item.strip()]
    if not values:
        raise ValueError(f"--grid {spec!r}: no values after '='")
    for value in values:
        if len(value) != len(fields):
            raise ValueError(f"--grid {spec!r}: value {':'.join(value)!r} has {len(value)} parts for "
                             f"{len(fields)} fields {list(fields)}")
    return fields, values


def expand_grid(specs: list[str], seeds: list[int], fixed: list[str] = ()) -> list[SweepPoint]:
    """The runs of a sweep: ``fixed`` overrides (``--set``), then the cartesian product of the axes
    (first axis slowest), each point with every seed (seeds innermost). A field in two axes is an error."""
    axes = [parse_axis(spec) for spec in specs]
    seen: dict[str, str] = {}
    for spec, (fields, _) in zip(specs, axes):
        for name in fields:
            if name in seen:
                raise ValueError(f"--grid: {name} is in two axes ({seen[name]!r} and {spec!r})")
            seen[name] = spec
    fixed_pairs = []
    for item in fixed:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r} must look like section.field=value")
        fixed_pairs.append((key.strip(), value.strip()))
    if not seeds:
        raise ValueError("a sweep needs at least one seed")
    points = []
    for combo in itertools.product(*[[(fields, v) for v in values] for fields, values in axes]):
        settings = dict(fixed_pairs)
        for fields, values in combo:
            settings.update(zip(fields, values))
        points += [SweepPoint(tuple(settings.items()), int(seed)) for seed in seeds]
    return points


def expand_points(points: list[dict], seeds: list[int], fixed: list[str] = ()) -> list[SweepPoint]:
    """The runs of an explicit list: ``fixed`` overrides, then each dict's settings, with every seed."""
    base = expand_grid([], [0], fixed)[0].settings
    return [SweepPoint(tuple({**dict(base), **{k: str(v) for k, v in point.items()}}.items()), int(seed))
            for point in points for seed in seeds]


def check_grid_fields(points: list[SweepPoint], fixed: list[str] = ()) -> None:
    """Raise ``ValueError`` for a run setting that would move the split (set those with ``--set``)."""
    fixed_values = dict(expand_grid([], [0], fixed)[0].settings)
    for point in points:
        for name, value in point.settings:
            if name.startswith(SPLIT_FIELDS) and fixed_values.get(name) != value:
                raise ValueError(f"--grid {name}: it decides the tiny world's split (the held-out prompts every run "
                                 "is scored on) or its assets; set it with --set, one value per sweep"
                                 + (" (seeds: --seeds)" if name == "runtime.seed" else ""))


def resolved_settings(preset: Preset, point: SweepPoint, default: Preset) -> dict:
    """``{section.field: value}`` of the point's settings as the preset holds them (typed), leaving
    out those equal to the ``default`` preset's and the seed (a run's ``seed`` says it): how the run
    differs from the preset, so ``sft.answers=all`` given or not is one run."""
    out = {}
    for key, _ in point.settings:
        section, name = key.split(".", 1)
        value = getattr(getattr(preset, section), name)
        if key != "runtime.seed" and value != getattr(getattr(default, section), name):
            out[key] = value
    return dict(sorted(out.items()))


def _digest(payload) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_id(preset_name: str, settings: dict, seed: int, sft_dir=None, rm_dir=None) -> str:
    """``<slug>-<hash>``: the slug names the settings for people, the hash identifies the run."""
    slug = "_".join(f"{k.rsplit('.', 1)[1]}={v}" for k, v in settings.items())
    slug = re.sub(r"[^A-Za-z0-9_.=+-]+", "-", slug)[:80] or "default"
    digest = _digest({"preset": preset_name, "settings": settings, "seed": seed,
                      "sft": str(sft_dir) if sft_dir else None, "rm": str(rm_dir) if rm_dir else None})
    return f"{slug}_seed={seed}-{digest}"


def folder_name(path: str | Path) -> str:
    """A given start / reward-model folder as runs name it: its path and when its model was saved, so
    a folder retrained in place (notebook 03 run again) makes new runs instead of reusing old lines."""
    from starling_lib.paths import saved_model_dir

    model_dir = saved_model_dir(path)
    saved = max((p.stat().st_mtime_ns for p in model_dir.glob("*") if p.is_file()), default=0)
    return f"{path}@{saved}"


def asset_key(preset: Preset, kind: str) -> str:
    """The key of the SFT start (``kind="sft"``) or reward model (``"rm"``) a preset trains."""
    runtime = {name: getattr(preset.runtime, name) for name in ASSET_RUNTIME}
    if kind == "sft":
        payload = {"sft": preset.sft, "policy_model": preset.policy_model, "tokenizer": preset.tokenizer}
    else:
        payload = {"reward": preset.reward, "reward_model": preset.reward_model, "tokenizer": preset.tokenizer,
                   "rm_prompts": preset.policy_study.rm_prompts}
    payload = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in payload.items()}
    return f"{kind}-{_digest({'preset': preset.name, **payload, 'runtime': runtime})}"


# ----------------------------------------------------------------------------------------------
# 2. Assets: the split, starts and reward models

@dataclass
class SweepContext:
    """What every run of one sweep shares: the split, the evaluation seeds, loaded starts and reward models."""

    out_dir: Path
    base: Preset
    parts: dict
    eval_seeds: tuple[int, ...]
    sft_dir: Path | None = None
    rm_dir: Path | None = None
    log: Callable[[str], None] = print
    starts: dict = field(default_factory=dict)
    folders: dict = field(default_factory=dict)
    reward_models: dict = field(default_factory=dict)

    @property
    def eval_prompts(self) -> list:
        return [row["prompt"] for row in self.parts["eval"]]

    @property
    def rl_prompts(self) -> list:
        return [row["prompt"] for row in self.parts["rl"]]

    def start(self, preset: Preset):
        """(name, policy, tokenizer) of the run's SFT start: given, found in DIR, or trained there now."""
        from starling_lib.policy.pipeline import load_saved_policy
        from starling_lib.policy.sft import train_sft

        given = self.sft_dir if self.sft_dir and asset_key(preset, "sft") == asset_key(self.base, "sft") else None
        name = folder_name(given) if given else asset_key(preset, "sft")
        before = None
        if preset.sft.continue_start:  # a later stage of the sweep's own start: named after it too
            before = self.start(self.base)
            name = f"{name}-after-{_digest(before[0])[:6]}"
        if name not in self.starts:
            folder = given or self.out_dir / name
            if not (folder / "final" / "config.json").is_file() and not (folder / "config.json").is_file():
                if given:
                    raise FileNotFoundError(f"{folder}: no saved SFT policy here (final/config.json missing)")
                self.log(f"sweep: training the SFT start {name} ({preset.sft.answers} answers, "
                         f"{preset.sft.n_prompts} prompts{', from the sweep start' if before else ''})")
                # a fresh copy of the earlier stage (SFTTrainer trains it in place)
                model, tokenizer = load_saved_policy(self.folders[before[0]]) if before else (None, None)
                train_sft(self._asset(preset), self._first(preset, "sft", preset.sft.n_prompts), folder,
                          model=model, tokenizer=tokenizer)
            self.starts[name], self.folders[name] = load_saved_policy(folder), folder
        return (name, *self.starts[name])

    def reward_model(self, preset: Preset):
        """(name, model, tokenizer, its metrics) of the run's proxy reward model; a given one is scored
        again on this sweep's held-out prompts, so every reward model's accuracy is on the same answers."""
        from starling_lib.reward.data import tinyworld_examples
        from starling_lib.reward.train import evaluate_reward_model, load_trained, train_reward_model

        given = self.rm_dir if self.rm_dir and asset_key(preset, "rm") == asset_key(self.base, "rm") else None
        name = folder_name(given) if given else asset_key(preset, "rm")
        if name not in self.reward_models:
            folder = given or self.out_dir / name
            if not (folder / "final").is_dir() and not (folder / "config.json").is_file():
                if given:
                    raise FileNotFoundError(f"{folder}: no saved reward model here (final/ missing)")
                rows = self._first(preset, "rm", preset.policy_study.rm_prompts)
                self.log(f"sweep: training the reward model {name} ({preset.reward.loss_type}, {len(rows)} prompts)")
                held_out = tinyworld_examples(self.parts["eval"])
                train_reward_model(self._asset(preset), tinyworld_examples(rows), held_out, folder)
            model, tokenizer = load_trained(folder)
            if given:
                metrics = evaluate_reward_model(model, tokenizer, tinyworld_examples(self.parts["eval"]), preset)
            else:
                metrics = json.loads((folder / "metrics.json").read_text())
            self.reward_models[name] = (model, tokenizer, metrics)
        return (name, *self.reward_models[name])

    def _asset(self, preset: Preset) -> Preset:
        """The run's preset with the sweep's own seed: a start or reward model does not depend on
        which run asked for it first."""
        preset = copy.deepcopy(preset)
        preset.runtime.seed = self.base.runtime.seed
        return preset

    def _first(self, preset: Preset, part: str, n: int) -> list[dict]:
        rows = self.parts[part]
        if n > len(rows):
            raise ValueError(f"{'sft.n_prompts' if part == 'sft' else 'policy_study.rm_prompts'}={n}: the split's "
                             f"{part} part has {len(rows)} prompts (set the larger value with --set, not --grid)")
        return rows[:n]


def split_fingerprint(parts: dict) -> str:
    """A hash of the RL and held-out prompts: two sweeps with the same one tune and score on the same prompts."""
    return _digest({"rl": [r["prompt"] for r in parts["rl"]], "eval": [r["prompt"] for r in parts["eval"]]})


def _check_manifest(out_dir: Path, manifest: dict) -> None:
    path = out_dir / MANIFEST_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        for key, value in manifest.items():
            if before.get(key) != value:
                raise ValueError(f"{path}: this folder was swept with {key}={before.get(key)!r}, this sweep has "
                                 f"{value!r}; runs scored differently cannot share one results file "
                                 "(use another --out)")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# 3. Runs

def _evaluate(policy, tokenizer, reference, scorer, ctx: SweepContext, preset: Preset) -> tuple[pd.DataFrame, float]:
    from starling_lib.policy.study import evaluate_policy

    started = time.perf_counter()
    frames = [evaluate_policy(policy, tokenizer, reference, scorer, ctx.eval_prompts, preset, seed=s,
                              gold_fn=gold_reward) for s in ctx.eval_seeds]
    return pd.concat(frames, ignore_index=True), time.perf_counter() - started


def _scorer(preset: Preset, model, tokenizer):
    from starling_lib.policy.rollout import RewardScorer
    from starling_lib.precision import runtime_dtype

    return RewardScorer(model, tokenizer, preset.policy.rm_max_length, dtype=runtime_dtype(preset.runtime))


def trainable_parameters(model) -> int:
    """Parameters of the policy that training updates (LoRA: the adapters; last-N: those blocks and the heads)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _train_online(preset: Preset, ctx: SweepContext, policy, tokenizer, reward_model, reward_tokenizer, run_dir: Path,
                  start_name: str, progress):
    from starling_lib.policy.train import train_policy

    run = train_policy(preset, ctx.rl_prompts, policy, tokenizer, reward_model, reward_tokenizer, run_dir,
                       gold_fn=gold_reward, resume=True, start_model=start_name, save_final=False, progress=progress)
    history = run.history
    train = {"iterations": preset.policy.iterations, "responses": int(sum(r.get("responses", 0) for r in history)),
             "trainable_parameters": trainable_parameters(run.policy),
             # the sum of the logged iterations, so a resumed run counts the time of its first part too
             "seconds": round(float(sum(r.get("iteration_s", 0.0) for r in history)), 3),
             "final": {k: history[-1][k] for k in ("proxy_reward", "gold_reward", "kl", "response_length", "entropy",
                                                   "kl_coef") if history and k in history[-1]},
             "kl_peak": max((r["kl"] for r in history), default=float("nan"))}
    curves = {k: [round(float(r[k]), 4) for r in history] for k in HISTORY_KEYS if history and k in history[0]}
    return run.policy, train, curves


def _train_dpo(preset: Preset, ctx: SweepContext, policy, tokenizer, run_dir: Path, progress):
    from starling_lib.policy.dpo import preference_pairs, train_dpo

    cfg = preset.dpo
    pairs = preference_pairs(ctx.parts["rl"], cfg.pair_rule, max_pairs=cfg.max_pairs, seed=preset.runtime.seed,
                             source="tiny world (rl part)")
    # measure_pairs=False: TRL's extra pass over the pairs after training (held-out gold is what counts here)
    run = train_dpo(preset, pairs, run_dir, model=policy, tokenizer=tokenizer, progress=progress, measure_pairs=False)
    train = {"pairs": len(pairs), "steps": run.metrics.get("steps"), "seconds": round(float(run.train_seconds), 3),
             "trainable_parameters": trainable_parameters(run.model),
             "final": {k: v for k, v in run.metrics.items() if k.startswith(("train_loss", "train_rewards"))}}
    return run.model, train, {}


@dataclass
class SweepReport:
    """What :func:`run_sweep` did: every planned run's id, which ran now and which were already done."""

    out_dir: Path
    planned: list[str]
    ran: list[str]
    skipped: list[str]
    seconds: float

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "results": str(self.out_dir / RESULTS_FILE), "planned": len(self.planned),
                "ran": len(self.ran), "skipped": len(self.skipped), "seconds": round(self.seconds, 1),
                "ran_ids": self.ran}


def plan_sweep(preset_name: str, grid: list[str], seeds: list[int], overrides: list[str] = (), sft_dir=None,
               rm_dir=None, points: list[dict] | None = None) -> list[tuple[SweepPoint, Preset, dict, str]]:
    """(point, its preset, its typed settings, its id) for every run of ``grid`` (or of ``points``),
    each preset built and checked (:func:`~starling_lib.policy.train.check_config`) before anything trains."""
    from starling_lib.policy.train import check_config

    if points is not None and grid:
        raise ValueError("give a grid or a list of points, not both")
    expanded = (expand_points(points, seeds, list(overrides)) if points is not None
                else expand_grid(grid, seeds, list(overrides)))
    check_grid_fields(expanded, list(overrides))
    base, default = get_preset(preset_name, list(overrides)), get_preset(preset_name)
    if base.sft.continue_start:
        raise ValueError("sft.continue_start=true names a later stage of the sweep's own start: give it in --grid, "
                         "not --set")
    planned = []
    for point in expanded:
        preset = get_preset(preset_name, [])
        for item in point.overrides:
            apply_override(preset, item)
        preset.runtime.seed = point.seed
        if preset.policy.algo == "dpo":
            if getattr(preset, "dpo", None) is None:
                raise ValueError("policy.algo=dpo: this version has no DPO (preset.dpo) to run")
        else:
            check_config(preset.policy)
        settings = resolved_settings(preset, point, default)
        given_sft = (folder_name(sft_dir) if sft_dir and (asset_key(preset, "sft") == asset_key(base, "sft")
                                                          or preset.sft.continue_start) else None)
        given_rm = folder_name(rm_dir) if rm_dir and asset_key(preset, "rm") == asset_key(base, "rm") else None
        planned.append((point, preset, settings, run_id(preset_name, settings, point.seed, given_sft, given_rm)))
    ids = [rid for *_, rid in planned]
    if len(set(ids)) < len(ids):
        raise ValueError("the grid names the same run twice (a value repeated in an axis?)")
    return planned


def run_sweep(preset_name: str, grid: list[str], seeds: list[int], out_dir: str | Path, *, overrides: list[str] = (),
              sft_dir: str | Path | None = None, rm_dir: str | Path | None = None,
              eval_seeds: tuple[int, ...] = DEFAULT_EVAL_SEEDS, log: Callable[[str], None] = print,
              progress: bool | None = None, points: list[dict] | None = None) -> SweepReport:
    """Run every point of the grid (or of ``points``; see the module docstring) into ``out_dir``;
    skip those already done."""
    from starling_lib.policy.pipeline import split_world

    started = time.perf_counter()
    out_dir = Path(out_dir)
    sft_dir, rm_dir = (Path(p) if p else None for p in (sft_dir, rm_dir))
    planned = plan_sweep(preset_name, grid, seeds, overrides, sft_dir, rm_dir, points)
    base = get_preset(preset_name, list(overrides))
    parts = split_world(base)
    eval_seeds = tuple(int(s) for s in eval_seeds)
    _check_manifest(out_dir, {"preset": preset_name, "eval_seeds": list(eval_seeds), "asset_seed": base.runtime.seed,
                              "split": split_fingerprint(parts),
                              "eval_prompts": len(parts["eval"]), "rl_prompts": len(parts["rl"])})
    ctx = SweepContext(out_dir, base, parts, eval_seeds, sft_dir, rm_dir, log)
    done = {line["id"] for line in read_results(out_dir)}
    skipped = [rid for *_, rid in planned if rid in done]
    # Starts and reward models first, here, one after another (runs share them); then every start's
    # evaluation and every run as independent jobs, side by side (runtime.parallel_runs).
    jobs, labels = [], []
    for i, (point, preset, settings, rid) in enumerate(planned, 1):
        if rid in done:
            continue
        start_name, start_policy, tokenizer = ctx.start(preset)
        rm_name, reward_model, reward_tokenizer, rm_metrics = ctx.reward_model(preset)
        models = (start_policy, tokenizer, reward_model, reward_tokenizer)
        names = (start_name, rm_name, rm_metrics)
        start_id = f"start-{_digest({'start': start_name, 'rm': rm_name, 'eval_seeds': list(eval_seeds)})}"
        if start_id not in done:
            jobs.append(("start", start_id, preset, None, {}, names, models, parts, eval_seeds, None, progress))
            labels.append(None)
            done.add(start_id)
        jobs.append(("run", rid, preset, point.seed, settings, names, models, parts, eval_seeds,
                     out_dir / "runs" / rid, progress))
        labels.append(f"[{i}/{len(planned)}] {rid}")
    ran = []

    def finished(index: int, result) -> None:
        line, seconds = result
        append_line(out_dir, line)
        if labels[index] is not None:
            ran.append(line["id"])
            ev = line["eval"]
            log(f"sweep {labels[index]}: held-out gold {ev['gold']:.3f} proxy {ev['proxy']:.2f} KL {ev['kl']:.2f} "
                f"({line['train']['seconds']:.0f} s training, {seconds:.0f} s in all)")

    map_runs(sweep_job, jobs, workers_for(base, len(jobs)), on_result=finished)
    ran = [rid for *_, rid in planned if rid in set(ran)]
    return SweepReport(out_dir, [rid for *_, rid in planned], ran, skipped, time.perf_counter() - started)


def sweep_job(kind: str, line_id: str, preset: Preset, seed: int | None, settings: dict, names: tuple, models: tuple,
              parts: dict, eval_seeds: tuple[int, ...], run_dir: Path | None, progress) -> tuple[dict, float]:
    """One job of :func:`run_sweep` (:func:`~starling_lib.parallel.map_runs`): ``kind`` ``start`` evaluates
    the start policy, ``run`` trains a copy of it (online or DPO) and evaluates the result; ``(the
    results line, seconds)``. ``models``: (start policy, tokenizer, reward model, its tokenizer), unchanged."""
    import multiprocessing

    t0 = time.perf_counter()
    start_policy, tokenizer, reward_model, reward_tokenizer = models
    start_name, rm_name, rm_metrics = names
    ctx = SweepContext(Path("."), preset, parts, eval_seeds, log=lambda line: None)
    scorer = _scorer(preset, reward_model, reward_tokenizer)
    if kind == "start":
        evaluation, seconds = _evaluate(start_policy, tokenizer, start_policy, scorer, ctx, preset)
        return (result_line("start", line_id, preset, None, {}, start_name, rm_name, rm_metrics, evaluation,
                            eval_seeds, seconds), time.perf_counter() - t0)
    if multiprocessing.parent_process() is not None:
        progress = False  # a spawned worker's bars would go to the terminal that started the kernel
    policy = copy.deepcopy(start_policy)
    if preset.policy.algo == "dpo":
        tuned, train, curves = _train_dpo(preset, ctx, policy, tokenizer, run_dir, progress)
    else:
        tuned, train, curves = _train_online(preset, ctx, policy, tokenizer, reward_model, reward_tokenizer,
                                             run_dir, start_name, progress)
    evaluation, seconds = _evaluate(tuned, tokenizer, start_policy, scorer, ctx, preset)
    return (result_line("run", line_id, preset, seed, settings, start_name, rm_name, rm_metrics, evaluation,
                        eval_seeds, seconds, train, curves), time.perf_counter() - t0)
