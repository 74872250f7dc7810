"""Published evaluation numbers, entered as data with their source.

:data:`STARLING_TABLE` is the results table of the Starling-7B release: the Starling-LM-7B-alpha
model card (huggingface.co/berkeley-nest/Starling-LM-7B-alpha, November 2023; the same table is in
the blog post starling.cs.berkeley.edu). MT-Bench is FastChat's 80 questions graded 1–10 by GPT-4;
"AlpacaEval" there is **AlpacaEval 1**: win rate (%) against text-davinci-003, judged by GPT-4. It
is not comparable with the AlpacaEval 2 numbers under ``../shared/data/alpaca_eval`` (reference
gpt-4-1106-preview, judged by GPT-4-turbo), where Starling-LM-7B-alpha has 14.25 %.
MMLU is left out (not an evaluation this project runs); ``None`` marks a cell the table leaves empty.
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


def starling_table():
    """:data:`STARLING_TABLE` as a DataFrame (``model, method, mt_bench, alpaca_eval_v1``)."""
    import pandas as pd

    return pd.DataFrame(STARLING_TABLE, columns=["model", "method", "mt_bench", "alpaca_eval_v1"])
