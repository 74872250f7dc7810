"""Published evaluation numbers, entered as data with their source.

:data:`STARLING_TABLE` is the results table of the Starling-7B release: the Starling-LM-7B-alpha
model card (huggingface.co/berkeley-nest/Starling-LM-7B-alpha, November 2023; the same table is in
the blog post starling.cs.berkeley.edu). MT-Bench is FastChat's 80 questions graded 1–10 by GPT-4;
"AlpacaEval" there is **AlpacaEval 1**: win rate (%) against text-davinci-003, judged by GPT-4. It
is not comparable with the AlpacaEval 2 numbers under ``../shared/data/alpaca_eval`` (reference
gpt-4-1106-preview, judged by GPT-4-turbo), where Starling-LM-7B-alpha has 14.25 %.
MMLU is left out (not an evaluation this project runs); ``None`` marks a cell the table leaves empty.

:func:`starling_table_recomputed` recomputes the AlpacaEval 1 column from real annotations where they
exist (``../shared/data/alpaca_eval/alpaca_eval_1/<name>_annotations.json``, GPT-4 judge
``alpaca_eval_gpt4``, or any such file you add), with alpaca_eval's own win rate
(:func:`~starling_lib.evaluation.alpaca_eval.score_preferences`), next to the typed value and that
leaderboard's csv. :data:`ALPACA_EVAL_V1_NAMES` maps the table's rows to that leaderboard's model
names: only rows whose typed value is the leaderboard's win rate rounded to 2 decimals.
"""

from __future__ import annotations

STARLING_TABLE_SOURCE = ("Starling-LM-7B-alpha model card, huggingface.co/berkeley-nest/Starling-LM-7B-alpha "
                         "(Nov 2023), evaluation table; AlpacaEval = AlpacaEval 1 (vs text-davinci-003)")

# (model, tuning method as the table gives it, MT-Bench, AlpacaEval 1 win rate %)
STARLING_TABLE: tuple[tuple[str, str, float, float | None], ...] = (
    ("GPT-4-Turbo", "?", 9.32, 97.70),
    ("GPT-4", "SFT + PPO", 8.99, 95.28),
    ("Starling-7B", "C-RLFT + APA", 8.09, 91.99),
    ("Claude-2", "?", 8.06, 91.36),
    ("GPT-3.5-Turbo", "?", 7.94, 89.37),
    ("Claude-1", "?", 7.90, 88.39),
    ("Tulu-2-dpo-70b", "SFT + DPO", 7.89, 95.10),
    ("Openchat-3.5", "C-RLFT", 7.81, 88.51),
    ("Zephyr-7B-beta", "SFT + DPO", 7.34, 90.60),
    ("Llama-2-70b-chat-hf", "SFT + PPO", 6.86, 92.66),
    ("Neural-chat-7b-v3-1", "SFT + DPO", 6.84, 84.53),
    ("Tulu-2-dpo-7b", "SFT + DPO", 6.29, 85.10),
)


# the table's row -> the AlpacaEval 1 leaderboard's model name (alpaca_eval_gpt4_leaderboard.csv), where the typed
# win rate is that row's rounded; Starling-7B, Claude-1, Tulu-2 and Openchat-3.5 have no row with their number
ALPACA_EVAL_V1_NAMES = {"GPT-4-Turbo": "gpt4_1106_preview", "GPT-4": "gpt4", "Claude-2": "claude-2",
                        "GPT-3.5-Turbo": "gpt-3.5-turbo-0301", "Zephyr-7B-beta": "zephyr-7b-beta",
                        "Llama-2-70b-chat-hf": "llama-2-70b-chat-hf"}
ANNOTATIONS_SUFFIX = "_annotations.json"


def starling_table():
    """:data:`STARLING_TABLE` as a DataFrame (``model, method, mt_bench, alpaca_eval_v1``)."""
    import pandas as pd

    return pd.DataFrame(STARLING_TABLE, columns=["model", "method", "mt_bench", "alpaca_eval_v1"])


def starling_table_recomputed(annotations_dir, leaderboard_csv=None):
    """The table with its AlpacaEval 1 column recomputed where ``annotations_dir`` holds
    ``<leaderboard name>_annotations.json`` for the row (:data:`ALPACA_EVAL_V1_NAMES`).

    Returns ``(table, extra)``: ``table`` adds ``alpaca_eval_name``, ``alpaca_eval_v1_recomputed``,
    ``n_total`` (valid preferences), ``difference`` (recomputed - typed) and, with ``leaderboard_csv``,
    ``leaderboard`` (its ``win_rate``) and ``leaderboard_difference``; ``extra`` scores the annotation
    files of models the table does not have, so an added file is reported rather than ignored.
    """
    from pathlib import Path

    import numpy as np

    from starling_lib.evaluation.alpaca_eval import load_annotations, load_leaderboard, score_preferences

    annotations_dir = Path(annotations_dir)
    files = {p.name[:-len(ANNOTATIONS_SUFFIX)]: p for p in sorted(annotations_dir.glob("*" + ANNOTATIONS_SUFFIX))}
    board = load_leaderboard(leaderboard_csv) if leaderboard_csv is not None else None

    def score(name):
        s = score_preferences([a.get("preference") for a in load_annotations(files[name])])
        return s["win_rate"], s["n_total"]

    table = starling_table()
    table["alpaca_eval_name"] = table["model"].map(ALPACA_EVAL_V1_NAMES)
    scored = [score(n) if n in files else (np.nan, np.nan) for n in table["alpaca_eval_name"]]
    table["alpaca_eval_v1_recomputed"] = [w for w, _ in scored]
    table["n_total"] = [n for _, n in scored]
    table["difference"] = table["alpaca_eval_v1_recomputed"] - table["alpaca_eval_v1"]
    if board is not None:
        table["leaderboard"] = [float(board.loc[n, "win_rate"]) if n in board.index else np.nan
                                for n in table["alpaca_eval_name"]]
        table["leaderboard_difference"] = table["alpaca_eval_v1_recomputed"] - table["leaderboard"]
    extra = {}
    for name in sorted(set(files) - set(table["alpaca_eval_name"].dropna())):
        win_rate, n_total = score(name)
        extra[name] = {"win_rate": win_rate, "n_total": n_total,
                       "leaderboard": float(board.loc[name, "win_rate"]) if board is not None and name in board.index
                       else None}
    return table, extra
