"""AlpacaEval judging: pair outputs by instruction, show them in a seeded order, read the verdict.

Two annotator styles with our own prompt wording (see the package docstring): ``weighted``
(AlpacaEval 2, the verdict's token log-probabilities) and ``ranking`` (AlpacaEval 1, a named output).
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Sequence

from starling_lib.judge.records import JudgeRequest
from starling_lib.rng import hash_seed

if TYPE_CHECKING:
    from starling_lib.judge.client import JudgeClient

STYLES = ("weighted", "ranking")
WEIGHTED_TOKENS = ("m", "M")  # first shown, second shown
RANKING_LABELS = ("Output (a)", "Output (b)")
WEIGHTED_PARAMS = {"logprobs": True, "top_logprobs": 5, "max_tokens": 1, "temperature": 0}
RANKING_PARAMS = {"max_tokens": 32, "temperature": 0}

_SYSTEM_COMMON = ("You are a careful evaluator of AI assistants. You will see one instruction and two "
                  "responses to it, given as JSON. Decide which response a thoughtful human would find "
                  "more helpful, correct and faithful to the instruction. The order in which the "
                  "responses appear and their length are not evidence of quality.")
WEIGHTED_SYSTEM = _SYSTEM_COMMON + (" Reply with one character only: 'm' if the response labelled m is "
                                    "better, 'M' if the response labelled M is better.")
RANKING_SYSTEM = _SYSTEM_COMMON + (" Reply with exactly 'Output (a)' if response (a) is better or "
                                   "'Output (b)' if response (b) is better, and nothing else.")
_USER_HEADER = "Instruction and responses to compare (JSON):"


def is_swapped(instruction: str, seed: int = 0) -> bool:
    """Whether the model's output is shown first: one bit of ``sha256(seed, instruction)``."""
    return hash_seed(seed, instruction) & 1 == 1  # the low bit of the digest's first byte


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
