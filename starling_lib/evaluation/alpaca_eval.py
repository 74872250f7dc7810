"""AlpacaEval: judge a model's outputs against a reference's, and score them exactly as published.

What it is for: the paper reports Starling-7B on AlpacaEval; this module reproduces the published
leaderboard numbers from the published annotations, and produces new annotations with our own
judge client (any OpenAI-compatible endpoint, or the simulated judge behind the fake server).

Conventions (those of ``tatsu-lab/alpaca_eval``):

- ``output_1`` is the **reference** (``generator_1``, e.g. ``gpt4_1106_preview``), ``output_2`` the
  **model**. ``preference`` is a float in [1, 2]: 1 = reference wins, 2 = model wins, 1.5 (or the
  legacy 0) = draw; a weighted judge gives ``1 + P(model wins)``. NaN = no verdict.
- :func:`score_preferences` is ``AbsoluteScoringRule.describe_head2head`` plus the
  ``ZeroOneScoringRule`` win rate (``alpaca_eval/metrics/helpers.py``, ``winrate.py``): on the
  published ``gpt4_0613_concise`` annotations it gives the leaderboard's ``win_rate``
  (9.400320574596272), ``standard_error`` (0.901021275896262), ``n_wins`` 71, ``n_wins_base`` 729,
  ``n_draws`` 5, ``n_total`` 805 and ``discrete_win_rate`` (9.130434782608695) to float precision
  (tested). Upstream drops NaN / out-of-range preferences silently; we count them (``n_dropped``).
- ``avg_length`` is ``int(mean(len(output)))`` in characters (truncated, as upstream's
  ``main.py``), 627 for ``gpt4_0613_concise``.

Length-controlled win rate (AlpacaEval 2, ``metrics/glm_winrate.py``, ``length_controlled_v1``):
a logistic GLM ``preference - 1 ~ tanh(std_delta_len) + instruction_difficulty +
not_gamed_baseline - 1`` fitted on soft labels, then predicted with ``std_delta_len = 0`` and
averaged. Upstream also reads per-instruction difficulties and the annotations of two "gamed"
baselines (it regularises toward them with weight 0.2) from the Hugging Face hub, and fits with
sklearn's L1 ``LogisticRegressionCV``. Offline we have neither, so
:func:`length_controlled_winrate` fits the same likelihood by Newton's method with a tiny L2, with
the difficulty term only when you pass difficulties; without them (``variant =
"no_instruction_difficulty"``) the published LC numbers (21.578 for ``gpt4_0613_concise``) are
**not** reproduced, and the result says so.

Judging (:func:`judge_outputs`): pairs by instruction text, shows the two outputs in an order
drawn from ``sha256(seed, instruction)`` (:func:`is_swapped`) and maps the verdict back so 2
always means the model won. Two styles, with our own prompt wording:

- ``weighted`` (AlpacaEval 2): a one-token verdict, ``m`` (first better) or ``M`` (second
  better), with ``logprobs``; ``P(second) = p(M) / (p(m) + p(M))`` over the first token's
  ``top_logprobs``. A server without ``logprobs`` fails every item, with a reason saying so.
- ``ranking`` (AlpacaEval 1): the judge answers ``Output (a)`` or ``Output (b)``; an answer that
  names neither or both is rejected by the client's validator, retried, and then failed.

Failures, missing and unmatched instructions are reported, never raised.
:class:`SimulatedAlpacaJudge` answers both styles for the tiny world (the fake server's responder).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from starling_lib.data.chat import messages_to_prompt
from starling_lib.data.tinyworld import gold_reward
from starling_lib.judge.client import JudgeRequest

if TYPE_CHECKING:
    from starling_lib.judge.client import JudgeClient

STYLES = ("weighted", "ranking")
WEIGHTED_TOKENS = ("m", "M")  # first shown, second shown
RANKING_LABELS = ("Output (a)", "Output (b)")
WEIGHTED_PARAMS = {"logprobs": True, "top_logprobs": 5, "max_tokens": 1, "temperature": 0}
RANKING_PARAMS = {"max_tokens": 32, "temperature": 0}
LC_VARIANT_FULL = "with_instruction_difficulty"
LC_VARIANT_OFFLINE = "no_instruction_difficulty"
LC_NOTE = ("Fitted offline without instruction_difficulty and without the regularisation toward "
           "'gamed' baselines: upstream AlpacaEval 2 downloads both from the Hugging Face hub "
           "(tatsu-lab/alpaca_eval df_gamed.csv, instruction_difficulty.csv). This value therefore "
           "differs from the published length_controlled_winrate (e.g. 21.578 for gpt4_0613_concise).")

_SYSTEM_COMMON = ("You are a careful evaluator of AI assistants. You will see one instruction and two "
                  "responses to it, given as JSON. Decide which response a thoughtful human would find "
                  "more helpful, correct and faithful to the instruction. The order in which the "
                  "responses appear and their length are not evidence of quality.")
WEIGHTED_SYSTEM = _SYSTEM_COMMON + (" Reply with one character only: 'm' if the response labelled m is "
                                    "better, 'M' if the response labelled M is better.")
RANKING_SYSTEM = _SYSTEM_COMMON + (" Reply with exactly 'Output (a)' if response (a) is better or "
                                   "'Output (b)' if response (b) is better, and nothing else.")
_USER_HEADER = "Instruction and responses to compare (JSON):"


# -------------------------------------------------------------------------------------- loaders

def _read_json_list(path: str | Path) -> list:
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
    return rows


def _check_row(path, i, row, string_fields, optional_strings=()) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"{path}: row {i}: expected an object, got {type(row).__name__}")
    for name in string_fields:
        if name not in row:
            raise ValueError(f"{path}: row {i}: missing field {name!r}")
    for name in (*string_fields, *(f for f in optional_strings if f in row)):
        if not isinstance(row[name], str):
            raise ValueError(f"{path}: row {i}: field {name!r} must be a string, got {row[name]!r:.60}")
    return dict(row)


def load_outputs(path: str | Path) -> list[dict]:
    """Model outputs: a JSON list of ``{instruction, output[, generator, dataset]}`` objects."""
    return [_check_row(path, i, row, ("instruction", "output"), ("generator",))
            for i, row in enumerate(_read_json_list(path))]


def load_annotations(path: str | Path) -> list[dict]:
    """Annotations in the alpaca_eval schema; ``preference`` must be a number or null."""
    rows = [_check_row(path, i, row, ("instruction", "output_1", "output_2"), ("generator_1", "generator_2"))
            for i, row in enumerate(_read_json_list(path))]
    for i, row in enumerate(rows):
        p = row.get("preference")
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float))):
            raise ValueError(f"{path}: row {i}: field 'preference' must be a number or null, got {p!r:.60}")
    return rows


def load_leaderboard(path: str | Path) -> pd.DataFrame:
    """A leaderboard CSV (``weighted_alpaca_eval_gpt4_turbo_leaderboard.csv``) indexed by model name."""
    df = pd.read_csv(path, index_col=0)
    if "win_rate" not in df.columns:
        raise ValueError(f"{path}: not an AlpacaEval leaderboard (no 'win_rate' column)")
    df.index.name = "model"
    return df


def write_annotations(path: str | Path, annotations: Sequence[dict]) -> Path:
    """Write annotations as a JSON list (NaN preferences as ``null``, so the file is valid JSON)."""
    def clean(value):
        return None if isinstance(value, float) and math.isnan(value) else value

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: clean(v) for k, v in row.items()} for row in annotations]
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


# -------------------------------------------------------------------------------------- scoring

def _as_preferences(preferences) -> pd.Series:
    # None and non-numbers become NaN (then dropped and counted), where upstream would crash.
    return pd.to_numeric(pd.Series(list(preferences), dtype=object), errors="coerce").astype(float)


def score_preferences(preferences: Sequence[float | None]) -> dict:
    """Head-to-head metrics of preferences (1 = reference wins, 2 = model wins, 1.5 or 0 = draw).

    ``AbsoluteScoringRule.describe_head2head``: map 0 to 1.5, drop values outside [1, 2] (NaN
    included), ``win_rate = mean(p - 1) * 100``, ``standard_error = sem(p - 1) * 100`` (ddof=1),
    ``n_wins``/``n_wins_base`` count ``p - 1`` above/below 0.5, ``n_draws`` counts 1.5 and 0 before
    dropping. ``discrete_win_rate`` is the zero-one rule: 1.5 becomes 0, every value is rounded
    half-to-even (so 2.4 still counts as a model win there), draws count half.
    """
    p = _as_preferences(preferences)
    n_draws = int(((p == 1.5) | (p == 0)).sum())
    p = p.replace({0.0: 1.5})
    valid = (p >= 1) & (p <= 2)
    x = p[valid] - 1
    discrete = p.replace({1.5: 0.0}).round().replace({0.0: 1.5})  # ZeroOneScoringRule's preprocessing
    d = discrete[(discrete >= 1) & (discrete <= 2)] - 1
    return {
        "win_rate": float(x.mean() * 100),
        "standard_error": float(x.sem() * 100),
        "n_wins": int((x > 0.5).sum()),
        "n_wins_base": int((x < 0.5).sum()),
        "n_draws": n_draws,
        "n_total": int(len(x)),
        "discrete_win_rate": float(d.mean() * 100),
        "n_dropped": int((~valid).sum()),
        "dropped_indices": [int(i) for i in np.flatnonzero(~valid.to_numpy())],
    }


def avg_length(outputs: Sequence[str]) -> int:
    """Mean character length, truncated to an int as in alpaca_eval's leaderboard."""
    return int(pd.Series([len(o) for o in outputs], dtype=float).mean()) if len(outputs) else 0


def score_annotations(annotations: Sequence[dict],
                      instruction_difficulty: Mapping[str, float] | None = None) -> dict:
    """:func:`score_preferences` plus ``avg_length`` of ``output_2`` and the length-controlled win rate."""
    out = score_preferences([a.get("preference") for a in annotations])
    out["avg_length"] = avg_length([a["output_2"] for a in annotations])
    lc = length_controlled_winrate(annotations, instruction_difficulty)
    out["length_controlled_winrate"] = lc["length_controlled_winrate"]
    out["lc_variant"] = lc["variant"]
    return out


# ---------------------------------------------------------------------- length-controlled win rate

def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=float)))


def fit_soft_logistic(X: np.ndarray, y: np.ndarray, *, l2: float = 1e-6, max_iter: int = 100,
                      tol: float = 1e-12) -> np.ndarray:
    """Weights ``w`` (no intercept) minimising ``mean(-y log σ(Xw) - (1-y) log(1-σ(Xw))) + l2/2 |w|²``.

    ``X: (n, d)``, ``y: (n,)`` soft labels in [0, 1]. Newton's method: the loss is convex, and the
    tiny ``l2`` keeps ``w`` finite when a label column is all 0 or all 1 and the Hessian regular when a
    feature is constant zero (e.g. no length difference anywhere).
    """
    n, d = X.shape
    w = np.zeros(d)
    for _ in range(max_iter):
        prob = _sigmoid(X @ w)
        grad = X.T @ (prob - y) / n + l2 * w
        hess = (X * (prob * (1 - prob))[:, None]).T @ X / n + l2 * np.eye(d)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.max(np.abs(step)) < tol:
            break
    return w


def length_controlled_winrate(annotations: Sequence[dict],
                              instruction_difficulty: Mapping[str, float] | None = None, *,
                              l2: float = 1e-6) -> dict:
    """AlpacaEval 2's length-controlled win rate, refitted here (see the module docstring).

    Features per annotation: ``tanh(delta_len / std(delta_len))`` with ``delta_len = len(output_1) -
    len(output_2)`` in characters and ``std`` with ddof=1 over all rows (as upstream);
    ``instruction_difficulty[instruction]`` when given; and a column of ones (upstream's
    ``not_gamed_baseline``, the model's own intercept). Target ``preference - 1`` (0 read as a draw),
    rows without a valid preference left out of the fit. The LC win rate is ``100 * mean(σ(w_0 +
    w_d * difficulty))``, the predicted win rate with the length difference set to zero, averaged
    over all rows. The same model as reference and baseline gives 50 by construction, as upstream.
    """
    df = pd.DataFrame({"len_1": [len(a["output_1"]) for a in annotations],
                       "len_2": [len(a["output_2"]) for a in annotations],
                       "preference": _as_preferences([a.get("preference") for a in annotations])})
    delta = (df["len_1"] - df["len_2"]).astype(float)
    std = delta.std()
    std_delta_len = delta / std if std > 0 else delta * 0.0  # no spread: the length term is moot
    names = ["np.tanh(std_delta_len)"]
    columns = [np.tanh(std_delta_len.to_numpy())]
    difficulty = np.zeros(len(df))
    if instruction_difficulty is not None:
        missing = [a["instruction"] for a in annotations if a["instruction"] not in instruction_difficulty]
        if missing:
            raise ValueError(f"instruction_difficulty has no value for {len(missing)} instruction(s), "
                             f"e.g. {missing[0][:80]!r}")
        difficulty = np.array([float(instruction_difficulty[a["instruction"]]) for a in annotations])
        names.append("instruction_difficulty")
        columns.append(difficulty)
    names.append("not_gamed_baseline")
    columns.append(np.ones(len(df)))
    X = np.column_stack(columns) if len(df) else np.zeros((0, len(names)))

    y = df["preference"].replace({0.0: 1.5}) - 1
    fit = ((y >= 0) & (y <= 1)).to_numpy()
    generators_1 = {a.get("generator_1") for a in annotations}
    same_model = len(generators_1) == 1 and None not in generators_1 and \
        generators_1 == {a.get("generator_2") for a in annotations}
    if same_model:
        w = np.zeros(len(names))
    elif fit.sum() == 0:
        w = np.full(len(names), np.nan)
    else:
        w = fit_soft_logistic(X[fit], y.to_numpy()[fit], l2=l2)
    w_difficulty = w[1] if instruction_difficulty is not None else 0.0
    lc = 50.0 if same_model else float(np.mean(_sigmoid(w[-1] + w_difficulty * difficulty)) * 100)
    return {
        "length_controlled_winrate": lc,
        "variant": LC_VARIANT_OFFLINE if instruction_difficulty is None else LC_VARIANT_FULL,
        "note": LC_NOTE if instruction_difficulty is None else
        "Fitted without upstream's regularisation toward 'gamed' baselines (hub-only data); close to, "
        "not identical with, the published value.",
        "coefficients": dict(zip(names, (float(v) for v in w))),
        "n_fit": int(fit.sum()),
        "delta_len_std": float(std),
        "l2": l2,
    }


# -------------------------------------------------------------------------------------- judging

def is_swapped(instruction: str, seed: int = 0) -> bool:
    """Whether the model's output is shown first: one bit of ``sha256(seed, instruction)``."""
    return hashlib.sha256(f"{seed}\x1f{instruction}".encode("utf-8")).digest()[0] & 1 == 1


def build_messages(instruction: str, first: str, second: str, style: str = "weighted") -> list[dict]:
    """Chat messages asking which of two outputs is better; JSON keeps arbitrary text unambiguous."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    labels = WEIGHTED_TOKENS if style == "weighted" else ("(a)", "(b)")
    payload = {"instruction": instruction,
               "responses": [{"label": labels[0], "text": first}, {"label": labels[1], "text": second}]}
    system = WEIGHTED_SYSTEM if style == "weighted" else RANKING_SYSTEM
    user = _USER_HEADER + "\n" + json.dumps(payload, indent=2, ensure_ascii=False)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_messages(messages: list[dict]) -> tuple[str, str, str, str]:
    """Inverse of :func:`build_messages`: ``(style, instruction, first, second)``; ValueError if not ours."""
    system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
    user = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
    style = {WEIGHTED_SYSTEM: "weighted", RANKING_SYSTEM: "ranking"}.get(system)
    if style is None or not user.startswith(_USER_HEADER + "\n"):
        raise ValueError("not an AlpacaEval comparison prompt of this module")
    payload = json.loads(user[len(_USER_HEADER) + 1:])
    first, second = (r["text"] for r in payload["responses"])
    return style, payload["instruction"], first, second


def parse_ranking_verdict(text: str) -> int:
    """0 if the judge chose the first output shown, 1 for the second; ValueError if not exactly one."""
    found = {m.group(1).lower() for m in re.finditer(r"output\s*\(\s*([ab])\s*\)", text or "", re.IGNORECASE)}
    if len(found) != 1:
        raise ValueError(f"expected exactly one of 'Output (a)' / 'Output (b)', got {str(text)[:60]!r}")
    return 0 if found == {"a"} else 1


def p_second_from_logprobs(raw: dict | None) -> float:
    """``P(second better) = p(M) / (p(m) + p(M))`` from the first token's ``top_logprobs``.

    Tokens are compared after stripping whitespace (``" M"`` counts as ``M``) and case-sensitively;
    a verdict token absent from the list has probability 0. Raises ValueError when the response has
    no logprobs or neither token appears.
    """
    logprobs = (raw or {}).get("logprobs") or {}
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content:
        raise ValueError("no logprobs in the response: the weighted style needs a judge server that "
                         "supports `logprobs` with `top_logprobs`")
    first = content[0]
    candidates = list(first.get("top_logprobs") or [])
    if first.get("token") not in {c.get("token") for c in candidates}:
        candidates.append({"token": first.get("token"), "logprob": first.get("logprob")})
    prob = {t: 0.0 for t in WEIGHTED_TOKENS}
    for c in candidates:
        token = (c.get("token") or "").strip()
        if token in prob and c.get("logprob") is not None:
            prob[token] += math.exp(c["logprob"])
    total = prob["m"] + prob["M"]
    if total <= 0:
        tokens = [c.get("token") for c in candidates]
        raise ValueError(f"neither 'm' nor 'M' among the first token's top_logprobs {tokens!r:.80}")
    return prob["M"] / total


def preference_from_verdict(p_second: float, swapped: bool) -> float:
    """``1 + P(model wins)``: the model was shown second unless ``swapped``."""
    return 1.0 + (1.0 - p_second if swapped else p_second)


def _first_few(items: list, k: int = 5) -> dict:
    return {"count": len(items), "first": items[:k]}


def _check_outputs(rows, what: str) -> tuple[list[tuple[int, dict]], list[dict]]:
    good, bad = [], []
    for i, row in enumerate(rows):
        problem = None
        if not isinstance(row, dict):
            problem = f"expected an object, got {type(row).__name__}"
        else:
            problem = next((f"field {f!r} must be a string, got {row.get(f)!r:.40}"
                            for f in ("instruction", "output") if not isinstance(row.get(f), str)), None)
        if problem:
            bad.append({"outputs": what, "row": i, "reason": problem})
        else:
            good.append((i, row))
    return good, bad


def judge_outputs(model_outputs: Sequence[dict], reference_outputs: Sequence[dict], client: "JudgeClient", *,
                  style: str = "weighted", seed: int = 0,
                  model_name: str | None = None) -> tuple[list[dict], dict]:
    """Judge each model output against the reference output for the same instruction.

    The reference list sets the order. Returns ``(annotations, report)``: annotations in the
    alpaca_eval schema plus ``is_swapped`` and ``failure`` (reason or None; preference NaN), and a
    report with ``n_pairs``, ``n_judged``, ``n_failed``, ``failures`` (id, instruction, reason),
    ``missing`` (reference instructions without a model output), ``unmatched`` (model instructions
    not in the reference), ``malformed`` rows, ``duplicates`` and the judge run's accounting.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    refs, bad_refs = _check_outputs(reference_outputs, "reference")
    models, bad_models = _check_outputs(model_outputs, "model")
    by_instruction: dict[str, dict] = {}
    duplicates = []
    for _, row in models:
        if row["instruction"] in by_instruction:
            duplicates.append(row["instruction"])  # the first one is judged
        else:
            by_instruction[row["instruction"]] = row
    ref_instructions = {row["instruction"] for _, row in refs}
    missing = [row["instruction"] for _, row in refs if row["instruction"] not in by_instruction]
    unmatched = [ins for ins in by_instruction if ins not in ref_instructions]

    pairs, requests = [], []
    params = WEIGHTED_PARAMS if style == "weighted" else RANKING_PARAMS
    for i, ref in refs:
        model = by_instruction.get(ref["instruction"])
        if model is None:
            continue
        swapped = is_swapped(ref["instruction"], seed)
        first, second = (model["output"], ref["output"]) if swapped else (ref["output"], model["output"])
        pairs.append((i, ref, model, swapped))
        requests.append(JudgeRequest(f"alpaca_eval:{i}", build_messages(ref["instruction"], first, second, style),
                                     dict(params)))

    # Ranking answers are checked by the client (a bad one is retried); a weighted verdict lives in
    # the logprobs, which a text validator cannot see, so it is read after the run.
    previous = client.validate
    client.validate = parse_ranking_verdict if style == "ranking" else None
    try:
        run = client.run(requests, desc=f"alpaca_eval {style}")
    finally:
        client.validate = previous

    annotator = f"starling_{style}_{client.config.model}"
    annotations, failures = [], []
    for (i, ref, model, swapped), result in zip(pairs, run.results):
        preference, failure = float("nan"), result.reason
        if result.ok:
            try:
                p_second = (p_second_from_logprobs(result.raw) if style == "weighted"
                            else float(parse_ranking_verdict(result.text)))
                preference = preference_from_verdict(p_second, swapped)
            except ValueError as exc:
                failure = f"unparsable_verdict: {exc}"
        if failure is not None:
            failures.append({"id": result.id, "instruction": ref["instruction"], "reason": failure})
        row = {"instruction": ref["instruction"], "output_1": ref["output"],
               "generator_1": ref.get("generator", "reference"), "output_2": model["output"],
               "generator_2": model_name or model.get("generator", "model"), "annotator": annotator,
               "preference": preference,
               "raw_completion": result.raw if style == "weighted" else result.text,
               "is_swapped": swapped, "failure": failure}
        if "dataset" in ref:
            row["dataset"] = ref["dataset"]
        annotations.append(row)

    summary = {k: v for k, v in run.to_dict().items() if k != "results"}
    report = {"style": style, "seed": seed, "n_pairs": len(pairs), "n_judged": len(pairs) - len(failures),
              "n_failed": len(failures), "failures": failures, "missing": _first_few(missing),
              "unmatched": _first_few(unmatched), "malformed": bad_refs + bad_models,
              "duplicates": _first_few(duplicates), "judge": summary}
    return annotations, report


# ------------------------------------------------------------------------------ simulated judge

def _nectar_prompt(instruction: str) -> str:
    if instruction.startswith("\n\nHuman: ") or instruction.startswith("Human: "):
        return instruction
    return messages_to_prompt([{"role": "user", "content": instruction}])


class SimulatedAlpacaJudge:
    """An offline AlpacaEval judge for the tiny world: Bradley-Terry on the gold reward.

    ``P(second better) = σ((gold(second) - gold(first)) / temperature + position_bias)``. Weighted
    requests get that probability as the logprobs of ``m`` / ``M``; ranking requests get a verdict
    drawn with a generator seeded by ``sha256(seed, request)``, so a repeated request gets the same
    answer. Anything else gets a reply that names no verdict.
    """

    def __init__(self, seed: int = 0, temperature: float = 0.5, position_bias: float = 0.0):
        self.seed, self.temperature, self.position_bias = seed, temperature, position_bias

    def logit_second(self, instruction: str, first: str, second: str) -> float:
        prompt = _nectar_prompt(instruction)
        gap = gold_reward(prompt, second) - gold_reward(prompt, first)
        return gap / max(self.temperature, 1e-9) + self.position_bias

    def respond(self, body: dict) -> str | dict:
        try:
            style, instruction, first, second = parse_messages(body.get("messages") or [])
        except (ValueError, KeyError, TypeError):
            return "I can only compare responses given in this project's AlpacaEval prompt."
        z = self.logit_second(instruction, first, second)
        if style == "ranking" and not body.get("logprobs"):
            digest = hashlib.sha256(f"{self.seed}\x1f{json.dumps(body, sort_keys=True)}".encode()).digest()
            u = np.random.default_rng(int.from_bytes(digest[:8], "little")).random()
            return RANKING_LABELS[int(u < float(_sigmoid(z)))]
        lp_second, lp_first = -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)  # log σ(z), log σ(-z)
        top = sorted([{"token": "m", "logprob": float(lp_first), "bytes": [109]},
                      {"token": "M", "logprob": float(lp_second), "bytes": [77]}], key=lambda t: -t["logprob"])
        return {"text": top[0]["token"],
                "logprobs": {"content": [{**top[0], "top_logprobs": top}], "refusal": None}}
