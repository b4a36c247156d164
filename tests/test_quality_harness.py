"""The answer-quality harness's scoring (benchmarks/quality.py): the normaliser, the interval and the paired test."""

from __future__ import annotations

import pytest

from benchmarks.quality import is_right, mcnemar, normalise, wilson
from benchmarks.quality_items import Item, items


def test_the_set_has_100_items_of_both_kinds_and_a_prefix_has_both():
    every = items()
    assert len(every) == 100 and len({i.question for i in every}) == 100
    assert {i.kind for i in every[:2]} == {"fact", "arithmetic"}
    assert items() == every  # the arithmetic is generated from a fixed seed


@pytest.mark.parametrize(
    ("reply", "answers", "right"),
    [
        ("The capital of France is Paris.", ("paris",), True),
        ("PARIS!", ("paris",), True),
        ("Comparison of cities", ("paris",), False),  # a word inside another is not the word
        ("A spider has eight legs.", ("8", "eight"), True),
        ("It has 8 legs", ("eight",), True),  # number words and digits are the same
        ("17 + 25 = 42", ("42",), True),
        ("The answer is 420.", ("42",), False),
        ("About 2,100,000 people", ("2100000",), True),
        ("Leonardo da Vinci painted it.", ("da vinci",), True),
    ],
)
def test_the_normaliser(reply, answers, right):
    assert is_right(reply, Item("q", answers, "fact")) is right


def test_normalise_drops_articles_and_punctuation():
    assert normalise("The Blue Whale, of course.") == "blue whale of course"


def test_wilson_interval():
    low, high = wilson(18, 24)
    assert low == pytest.approx(0.551, abs=0.001) and high == pytest.approx(0.880, abs=0.001)
    assert wilson(0, 0) == (0.0, 0.0)


def test_mcnemar_counts_only_the_items_where_the_two_differ():
    team = [True] * 10 + [False] * 2 + [True] * 5
    member = [True] * 10 + [True] * 2 + [False] * 5
    gained, lost, p = mcnemar(team, member)
    assert (gained, lost) == (5, 2)
    assert p == pytest.approx(0.453, abs=0.001)  # 2 * P(X <= 2), X ~ Binomial(7, 1/2)
    assert mcnemar([True], [True]) == (0, 0, 1.0)
