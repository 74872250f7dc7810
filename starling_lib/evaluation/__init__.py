"""Evaluation: MT-Bench and AlpacaEval, answer generation → judging → scores, on any judge.

- :mod:`~starling_lib.evaluation.answers`: answers from a Hugging Face chat model or any
  OpenAI-compatible server; MT-Bench's two turns at FastChat's per-category temperatures; FastChat's
  and AlpacaEval's file layouts; resumable.
- :mod:`~starling_lib.evaluation.mt_bench` (``files``, ``judge``, ``score``, ``demo``): FastChat's
  question / judge-prompt / reference files, single-answer grading (reference-guided for math,
  reasoning, coding; multi-turn prompts for turn 2), pairwise grading in both orders, scores; the
  project's offline demo set.
- :mod:`~starling_lib.evaluation.alpaca_eval` (``files``, ``score``, ``judge``): pairwise judging
  against reference outputs (v1 ranking and v2 weighted annotators, randomised order), win rate and
  standard error exactly as published, the length-controlled win rate.
- :mod:`~starling_lib.evaluation.simulated`: the simulated MT-Bench and AlpacaEval judges (the tiny
  world's gold reward, with noise), served over HTTP by :mod:`starling_lib.judge.endpoint`.
- :mod:`~starling_lib.evaluation.pipeline`: whole steps from a preset (generate, judge and score),
  what ``starling mt-bench`` and ``starling alpaca-eval`` call.
- :mod:`~starling_lib.evaluation.study`: what notebook 04 evaluates offline (notebook 03's SFT and
  APA policies, the tiny world's AlpacaEval demo set); :mod:`~starling_lib.evaluation.findings`: its
  bookkeeping (tables, results, checks, verdict); :mod:`~starling_lib.evaluation.figures`: its figures.

Judging goes through :class:`~starling_lib.judge.client.JudgeClient` (cache, retries, resume,
cost), so a killed run resumes without paying twice and gives the same scores.
"""
