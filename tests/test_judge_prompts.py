"""Ranking prompts: strategies, shuffles with recorded permutations, the authors' prompt logs."""

import itertools

import pytest

from conftest import RATING_STRATEGIES
from starling_lib.judge.prompts import (
    STRATEGIES, PromptLogError, build_ranking_request, load_prompt_log, parse_user_message, strategy_of_system_prompt,
    system_prompt,
)

PROMPT = "\n\nHuman: Tell me about rivers.\n\nAssistant: "
ANSWERS = [f"Answer number {i} about rivers." for i in range(7)]


def test_the_six_strategies_of_figure_6():
    assert tuple(STRATEGIES) == RATING_STRATEGIES
    prompts = {name: system_prompt(name, 7) for name in STRATEGIES}
    assert len(set(prompts.values())) == 6, "each strategy must be recognisable from its system prompt"
    for name, text in prompts.items():
        assert strategy_of_system_prompt(text) == name
        assert "[['_', '_', '_', '_', '_', '_', '_']]" in text
    assert "pairs" not in prompts["no_pairwise"] and "pairs" in prompts["pairwise_no_given_order"]
    assert "Break ties randomly" in prompts["no_pairwise"]
    assert "tie" not in prompts["baseline_no_tiebreak"].replace("tie-", "")
    assert strategy_of_system_prompt("You are a helpful assistant.") is None


def test_shuffle_is_recorded_and_reproducible():
    req = build_ranking_request(PROMPT, ANSWERS, "no_pairwise", item_id="p1", seed=3)
    assert sorted(req.permutation) == list(range(7)) and req.permutation != list(range(7))
    conversation, shown = parse_user_message(req.messages[1]["content"])
    assert conversation == PROMPT  # verbatim, Nectar's leading newlines and trailing space included
    assert shown == [ANSWERS[i] for i in req.permutation]
    # Position 2 shows answer permutation[2]; a ranking of positions maps back to answers.
    assert req.to_answer_order([2, 0]) == [req.permutation[2], req.permutation[0]]
    again = build_ranking_request(PROMPT, ANSWERS, "no_pairwise", item_id="p1", seed=3)
    assert again.messages == req.messages and again.permutation == req.permutation
    other_seed = build_ranking_request(PROMPT, ANSWERS, "no_pairwise", item_id="p1", seed=4)
    other_strategy = build_ranking_request(PROMPT, ANSWERS, "pairwise_no_given_order", item_id="p1", seed=3)
    assert other_seed.permutation != req.permutation or other_strategy.permutation != req.permutation
    unshuffled = build_ranking_request(PROMPT, ANSWERS, "no_pairwise", shuffle=False)
    assert unshuffled.permutation == list(range(7))


def test_positions_are_uniform_over_many_prompts():
    counts = [[0] * 7 for _ in range(7)]
    for i in range(700):
        req = build_ranking_request(PROMPT, ANSWERS, "no_pairwise", item_id=str(i))
        for pos, ans in enumerate(req.permutation):
            counts[ans][pos] += 1
    assert all(60 <= c <= 140 for row in counts for c in row)  # expected 100 each


def test_pairwise_and_tiebreak_orders():
    all_pairs = list(itertools.combinations("ABCDEFG", 2))
    fixed = build_ranking_request(PROMPT, ANSWERS, "pairwise_not_random", item_id="x")
    assert fixed.pairwise_order == all_pairs and fixed.tiebreak_order is None
    assert "PAIRWISE EVALUATION ORDER: [('A', 'B'), ('A', 'C')" in fixed.messages[1]["content"]
    rand = build_ranking_request(PROMPT, ANSWERS, "baseline_no_tiebreak", item_id="x")
    assert sorted(rand.pairwise_order) == all_pairs and rand.pairwise_order != all_pairs
    assert "TIEBREAK ORDER" not in rand.messages[1]["content"]
    free = build_ranking_request(PROMPT, ANSWERS, "pairwise_no_given_order", item_id="x")
    assert free.pairwise_order is None and "PAIRWISE EVALUATION ORDER" not in free.messages[1]["content"]
    tb = [build_ranking_request(PROMPT, ANSWERS, "tiebreak_order_given", item_id=str(i)).tiebreak_order
          for i in range(5)]
    assert all(sorted(t) == list("ABCDEFG") for t in tb) and len({tuple(t) for t in tb}) > 1
    static = [build_ranking_request(PROMPT, ANSWERS, "tiebreak_order_given_static_2", item_id=str(i),
                                    static_tiebreak="GFEDCBA").tiebreak_order for i in range(5)]
    assert all(t == list("GFEDCBA") for t in static)
    assert "TIEBREAK ORDER: ['G', 'F'" in build_ranking_request(
        PROMPT, ANSWERS, "tiebreak_order_given_static_2", static_tiebreak="GFEDCBA").messages[1]["content"]
    with pytest.raises(ValueError, match="permutation of ABCDEFG"):
        build_ranking_request(PROMPT, ANSWERS, "tiebreak_order_given_static_2", static_tiebreak="ABC")


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(KeyError, match="unknown ranking strategy 'naive'"):
        build_ranking_request(PROMPT, ANSWERS, "naive")
    with pytest.raises(ValueError, match="between 2 and"):
        build_ranking_request(PROMPT, ANSWERS[:1])
    with pytest.raises(ValueError, match="not a ranking prompt"):
        parse_user_message("Hello")


def test_authors_prompt_logs_render_verbatim(ratings_dir):
    for name in RATING_STRATEGIES:
        log = load_prompt_log(ratings_dir / name)
        text = log.render(7)
        source = (ratings_dir / name / "prompt_log.txt").read_text()
        assert text.startswith("We are interested in ranking different large language model chat completions")
        assert "evaluate the quality of the completions provided by 7 AI assistants" in text
        assert "[['_' ,'_' ,'_' ,'_' ,'_' ,'_' ,'_']]" in text
        assert "{" not in text and text.endswith("Be as objective as possible.\n\n")
        # Every literal line of the source template survives unchanged.
        for line in source.splitlines()[2:-3]:
            if "{" not in line:
                assert line in text
        assert "[['_' ,'_' ,'_']]" in log.render(3) and "by 3 AI assistants" in log.render(3)
    req = build_ranking_request(PROMPT, ANSWERS, "no_pairwise",
                                system_prompt_text=load_prompt_log(ratings_dir / "no_pairwise").render(7))
    assert req.messages[0]["content"].startswith("We are interested in ranking")


def test_prompt_log_loader_never_executes_code(tmp_path):
    evil = tmp_path / "prompt_log.txt"
    evil.write_text('def get_system_prompt(k, explain=False):\n    return f"""Rank {__import__("os").getcwd()}"""\n')
    log = load_prompt_log(tmp_path)
    with pytest.raises(PromptLogError, match="unsupported expression"):
        log.render(7)
    (tmp_path / "bad.txt").write_text("this is not python (")
    with pytest.raises(PromptLogError, match="not Python source"):
        load_prompt_log(tmp_path / "bad.txt")
    (tmp_path / "plain.txt").write_text("x = 1\n")
    with pytest.raises(PromptLogError, match="no `return f"):
        load_prompt_log(tmp_path / "plain.txt")
    with pytest.raises(FileNotFoundError, match="no prompt log"):
        load_prompt_log(tmp_path / "missing.txt")
