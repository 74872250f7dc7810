"""MT-Bench: load questions and judge prompts, ask an LLM judge to grade answers, score them.

What it is for: the paper reports Starling-7B's MT-Bench score (8.09, GPT-4 as judge). This module
runs the same protocol as FastChat's ``fastchat/llm_judge`` (v0.2.36) through our
:class:`~starling_lib.judge.client.JudgeClient`, so a run is concurrent, retried, cached and
resumable, and it works offline against the tiny world (:mod:`.demo`, judged by
:class:`~starling_lib.evaluation.simulated.SimulatedMTBenchJudge`).

FastChat correspondence (``common.py`` / ``gen_judgment.py`` / ``show_result.py``):

- files: ``question.jsonl``, ``judge_prompts.jsonl``, ``model_answer/<model>.jsonl`` and
  ``reference_answer/gpt-4.jsonl`` in FastChat's layout (:func:`load_questions`,
  :func:`load_judge_prompts`, :func:`load_model_answers`); ``model_judgment/<judge>_single.jsonl``
  rows (:func:`judge_single`, :func:`write_judgments`);
- prompt choice: categories in :data:`NEED_REF_CATS` get the reference-guided ``*-math-v1`` prompts,
  the rest ``single-v1`` / ``pair-v2``; turn 2 uses the ``-multi-turn`` variant, which sees both
  questions, both answers (and both references);
- the system message is the prompt's ``system_prompt``; temperature 0, ``max_tokens`` 2048 (our
  ``judge.max_tokens``, whose default it is);
- ratings are read with ``\\[\\[(\\d+\\.?\\d*)\\]\\]``, falling back to ``\\[(\\d+\\.?\\d*)\\]``;
  verdicts are ``[[A]]`` / ``[[B]]`` / ``[[C]]`` (tie), checked in that order;
- pairwise: each pair is judged in both orders; the verdicts agree → that winner, else a tie
  ("inconsistent"); scores are means over valid judgments by model, by (model, turn) and overall.

Where we differ, on purpose:

- an answer with no parsable rating or verdict is *retried* (the client's ``max_retries``) and
  then recorded as failed with its reason (``score`` ``None``, ``failure`` set); FastChat stores
  -1 / ``"error"`` without retrying. Failures are counted in the scores (``n_failed``); a score of
  -1 in a FastChat file reads as failed too. Ratings outside 1-10 count as unparsable.
- missing inputs never crash a run: a question without an answer, an answer with fewer turns than
  judged, a failed generation (``$ERROR$``), an answer to an unknown question id and a reference
  category without a reference are skipped and listed in the run report (FastChat asserts answers
  exist, grades ``$ERROR$`` like any answer, and has no reference-free fallback for math
  questions, so we skip those too rather than grade them without a reference);
- a reference comes from the references file, else from the question's own ``reference`` field.

Modules: :mod:`.files` (FastChat's files, :func:`load_bench`), :mod:`.judge` (prompt choice,
requests, :func:`judge_single`, :func:`judge_pairwise`), :mod:`.score` (show_result's scores and
win rates, merging and scoring judgment files), :mod:`.demo` (the offline demo set and its writer,
``python -m starling_lib.evaluation.mt_bench.demo --write-demo``). The public names of the first
three are importable from here.
"""

from starling_lib.evaluation.mt_bench.files import (DEMO_DIR, OUTPUT_FORMAT, ALLOWED_PLACEHOLDERS,
                                                    REQUIRED_PLACEHOLDERS, JUDGE_PROMPT_NAMES, Question,
                                                    JudgePrompt, load_questions, load_judge_prompts,
                                                    load_model_answers, load_references, write_judgments,
                                                    read_judgments, category_counts, resolve_bench_dir,
                                                    reference_file, Bench, bench_name, load_bench)
from starling_lib.evaluation.mt_bench.judge import (NEED_REF_CATS, JUDGE_PARAMS, ONE_SCORE_PATTERN,
                                                    ONE_SCORE_PATTERN_BACKUP, parse_rating, parse_pair_verdict,
                                                    build_single_requests, build_pairwise_requests, judge_single,
                                                    combine_games, judge_pairwise)
from starling_lib.evaluation.mt_bench.score import (pairwise_win_rate, pairwise_rates, score_single,
                                                    merge_judgments, score_judgments)
