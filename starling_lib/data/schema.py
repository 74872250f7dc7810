"""The Nectar schema exactly as published (``berkeley-nest/Nectar`` on the Hugging Face Hub).

One row per prompt::

    prompt        str   "\\n\\nHuman: ...\\n\\nAssistant: " (Anthropic HH format, any number of turns)
    answers       list  [{"answer": str, "model": str, "rank": float}, ...]  rank 1.0 = best
    turns         int   number of Human turns in the prompt
    num_responses int   number of answers (7 in Nectar)
    source        list  [str, ...] datasets the prompt came from (e.g. "sharegpt")
    good_natured  bool  GPT-4's judgement of whether the request is benign

Every loader returns rows with exactly these fields, in this order.
"""

from __future__ import annotations

import datasets

NECTAR_FIELDS = ("prompt", "answers", "turns", "num_responses", "source", "good_natured")
ANSWER_FIELDS = ("answer", "model", "rank")

NECTAR_FEATURES = datasets.Features({
    "prompt": datasets.Value("string"),
    "answers": [{
        "answer": datasets.Value("string"),
        "model": datasets.Value("string"),
        "rank": datasets.Value("float64"),
    }],
    "turns": datasets.Value("int64"),
    "num_responses": datasets.Value("int64"),
    "source": [datasets.Value("string")],
    "good_natured": datasets.Value("bool"),
})

HUMAN = "\n\nHuman: "
ASSISTANT = "\n\nAssistant: "
