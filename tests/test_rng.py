"""``rng.seeded_rng`` / ``hash_seed`` keep each call site's byte layout, so committed numbers stay put."""

import hashlib
import json

import numpy as np

from starling_lib.evaluation.alpaca_eval import is_swapped
from starling_lib.evaluation.answers import batch_seed
from starling_lib.rng import hash_seed, seeded_rng


def sha_int(text: str, nbytes: int = 8, byteorder: str = "little") -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:nbytes], byteorder)


def test_default_layout_joins_parts_with_unit_separators_little_endian():
    # judge.prompts shuffles, judge.simulated rankings, the AlpacaEval judge: "<seed>\x1f<part>..."
    assert hash_seed(3, "key", "no_pairwise") == sha_int("3\x1fkey\x1fno_pairwise")
    draws = seeded_rng(3, "key", "no_pairwise").random(4)
    assert np.array_equal(draws, np.random.default_rng(sha_int("3\x1fkey\x1fno_pairwise")).random(4))


def test_kept_layouts_of_the_evaluation_study_the_mt_bench_judge_and_answer_batches():
    assert hash_seed("alpaca-demo", 0, "Write a poem", sep=":") == sha_int("alpaca-demo:0:Write a poem")
    blob = json.dumps([0, [{"role": "user", "content": "Grüße"}]], sort_keys=True, ensure_ascii=False)
    assert hash_seed(blob, byteorder="big") == sha_int(blob, byteorder="big")
    assert batch_seed(7, [81, 82]) == sha_int("7:81,82", nbytes=4) < 2**32


def test_is_swapped_is_the_low_bit_of_the_digest_first_byte():
    for instruction in ("Write a poem about bees.", "List three fruits.", "Explain tides."):
        first_byte = hashlib.sha256(f"0\x1f{instruction}".encode()).digest()[0]
        assert is_swapped(instruction, 0) == bool(first_byte & 1)
    assert {is_swapped(f"instruction {i}") for i in range(20)} == {True, False}
