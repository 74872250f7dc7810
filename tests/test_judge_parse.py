"""parse_ranking on the shapes GPT-4 really wrote, and on what it must refuse."""

import json

import pytest

from starling_lib.judge.parse import ParsedRanking, RankingParseError, parse_ranking


@pytest.mark.parametrize("text, expected, pattern", [
    ("This is a not good natured conversation. \n\n[['E', 'G', 'F', 'D', 'A', 'C', 'B']]",
     [4, 6, 5, 3, 0, 2, 1], "double_bracket"),
    ("('A', 'B'): A\n('B', 'C'): C\n\nFinal Ranking: ['B', 'A', 'C', 'D', 'E', 'F', 'G']",
     [1, 0, 2, 3, 4, 5, 6], "labelled"),
    ("E vs F: E wins.\n\nFinal Rankings: E, D, A, F, G, C, B", [4, 3, 0, 5, 6, 2, 1], "labelled"),
    ("('C', 'G'): G\n\nRanking from best to worst: C, D, B, E, G, F, A.", [2, 3, 1, 4, 6, 5, 0], "labelled"),
    ("Final ranking based on pairwise comparison results: ['D', 'A', 'B', 'E', 'G', 'F', 'C']",
     [3, 0, 1, 4, 6, 5, 2], "labelled"),
    ('[[ "b" , "a","c", "d","e","f","g" ]]', [1, 0, 2, 3, 4, 5, 6], "double_bracket"),
    ("[[e, g, f, d, a, c, b]]", [4, 6, 5, 3, 0, 2, 1], "double_bracket"),
    ("Ranking: A > C > B > D > E > G > F", [0, 2, 1, 3, 4, 6, 5], "labelled"),
    ("Verdicts done.\nG, F, E, D, C, B, A", [6, 5, 4, 3, 2, 1, 0], "bare"),
    # The format template echoed before the answer must not be taken for the answer.
    ("Format: [['_' ,'_' ,'_']]\n... so [['C', 'A', 'B']]", [2, 0, 1], "double_bracket"),
])
def test_real_shapes(text, expected, pattern):
    k = len(expected)
    parsed = parse_ranking(text, k)
    assert parsed == expected
    assert parsed.pattern == pattern and parsed.complete
    assert parsed.letters == [chr(65 + i) for i in expected]


def test_last_double_bracket_wins_and_pairwise_tuples_are_not_rankings():
    text = "first try [['A', 'B', 'C']]\n('A', 'B'): B\n('B', 'C'): C\nfinal [['C', 'B', 'A']]"
    assert parse_ranking(text, 3) == [2, 1, 0]
    with pytest.raises(RankingParseError) as err:
        parse_ranking("('A', 'B'): B\n('B', 'C'): C\n('A', 'C'): C", 3)
    assert err.value.reason == "no_ranking"


def test_incomplete_ranking_is_reported_and_can_be_filled():
    parsed = parse_ranking("[['C', 'A']]", 4)
    assert parsed == [2, 0] and not parsed.complete and parsed.missing == [1, 3]
    filled = parse_ranking("[['C', 'A']]", 4, fill_missing=True)
    assert filled == [2, 0, 1, 3] and filled.filled and not filled.complete
    with pytest.raises(RankingParseError) as err:
        parse_ranking("[['C', 'A']]", 4, allow_incomplete=False)
    assert err.value.reason == "incomplete" and "['B', 'D']" in str(err.value)


def test_duplicates_count_once_and_make_the_ranking_incomplete():
    parsed = parse_ranking("[['B', 'A', 'B']]", 3)
    assert parsed == [1, 0] and parsed.duplicates == ["B"] and parsed.missing == [2] and not parsed.complete


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), ("   \n", "empty"), (None, "empty"),
    ("I cannot rank these answers.", "no_ranking"),
    ("[['A', 'B', 'H']]", "out_of_range"),
])
def test_unparseable_text_raises_with_a_reason(text, reason):
    with pytest.raises(RankingParseError) as err:
        parse_ranking(text, 3)
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


def test_parsed_ranking_is_a_list():
    parsed = parse_ranking("[['B', 'A']]", 2)
    assert isinstance(parsed, ParsedRanking) and isinstance(parsed, list)
    assert json.loads(json.dumps(parsed)) == [1, 0]


def test_every_real_gpt4_output_parses_to_the_recorded_order(ratings_dir):
    """All 1,143 real rating texts: parse_ranking agrees with the authors' ranking_order."""
    n_rows = n_agree = 0
    for log in sorted(ratings_dir.glob("*/rankings.jsonl")):
        for line in log.read_text().splitlines():
            row = json.loads(line)
            n_rows += 1
            n_agree += parse_ranking(row["rating_text"], row["k"]) == row["ranking_order"]
    assert n_rows == 1143
    assert n_agree == n_rows


def test_a_long_near_miss_line_is_refused_not_backtracked():
    # 60 letters then a stray token: a single regex over the whole list took 2**n steps here.
    text = "Final ranking: " + ", ".join(["A"] * 60) + " !"
    with pytest.raises(RankingParseError) as err:
        parse_ranking(text, 7)
    assert err.value.reason == "no_ranking"
