"""AlpacaEval: judge a model's outputs against a reference's, and score them exactly as published.

What it is for: the paper reports Starling-7B on AlpacaEval; this module reproduces the published
leaderboard numbers from the published annotations, and produces new annotations with our own
judge client (any OpenAI-compatible endpoint, or a simulated judge behind the local server).

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
averaged. Upstream reads per-instruction difficulties and two "gamed" baselines' annotations from
the Hugging Face hub, so offline no output field is named ``length_controlled_winrate`` (the
published quantity) except where it is read from a leaderboard. Two approximations instead, each
under its own name and with its measured error against the leaderboard:

- :func:`refit_lc_from_annotations` refits the GLM on one model's annotations
  (``lc_winrate_refit_no_difficulty``, or ``lc_winrate_refit_with_difficulty`` when you pass
  difficulties): a few points off, tens for gamed outputs (43.19 for ``gpt4_0613_concise``, published 21.578).
- :func:`~.lc.lc_from_weights` (``starling alpaca-eval lc``) estimates the 805 difficulties from the
  real annotations of the leaderboard's models with their published GLM weights fixed, then predicts
  each model's LC exactly as upstream's ``predict_winrate`` does (``lc_winrate_estimated``); exact
  where the weights make difficulty irrelevant (the baseline), within a fraction of a point elsewhere.

Judging (:func:`judge_outputs`): pairs by instruction text, shows the two outputs in an order
drawn from ``sha256(seed, instruction)`` (:func:`is_swapped`) and maps the verdict back so 2
always means the model won. Two styles, with our own prompt wording:

- ``weighted`` (AlpacaEval 2): a one-token verdict, ``m`` (first better) or ``M`` (second
  better), with ``logprobs``; ``P(second) = p(M) / (p(m) + p(M))`` over the first token's
  ``top_logprobs``. A server without ``logprobs`` fails every item, with a reason saying so.
- ``ranking`` (AlpacaEval 1): the judge answers ``Output (a)`` or ``Output (b)``; an answer that
  names neither or both is rejected by the client's validator, retried, and then failed.

Failures, missing and unmatched instructions are reported, never raised.
:class:`~starling_lib.evaluation.simulated.SimulatedAlpacaJudge` answers both styles for the tiny world.

Modules: :mod:`.files` (outputs, annotations, leaderboards, instruction difficulties),
:mod:`.score` (the published metrics and the LC refit), :mod:`.lc` (LC from the published weights), :mod:`.judge` (prompts,
order swaps, verdicts, :func:`judge_outputs`); their public names are importable from here.
"""

from starling_lib.evaluation.alpaca_eval.files import (load_outputs, load_annotations, load_leaderboard,
                                                       write_annotations, read_instruction_difficulty)
from starling_lib.evaluation.alpaca_eval.score import (LC_VARIANT_FULL, LC_VARIANT_OFFLINE, LC_FIELDS, LC_NOTE,
                                                       score_preferences, avg_length, score_annotations,
                                                       fit_soft_logistic, refit_lc_winrate, refit_lc_from_annotations,
                                                       score_annotation_file)
from starling_lib.evaluation.alpaca_eval.lc import (load_lc_weights, load_leaderboard_preferences,
                                                    estimate_instruction_difficulty, predict_lc_winrate, lc_from_weights)
from starling_lib.evaluation.alpaca_eval.judge import (STYLES, WEIGHTED_TOKENS, RANKING_LABELS, WEIGHTED_PARAMS,
                                                       RANKING_PARAMS, WEIGHTED_SYSTEM, RANKING_SYSTEM, is_swapped,
                                                       build_messages, parse_messages, parse_ranking_verdict,
                                                       p_second_from_logprobs, preference_from_verdict,
                                                       judge_outputs)
