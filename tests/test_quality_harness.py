"""The answer-quality benchmarks: the harness's scoring, paired test and keyed presets; the judging tallies."""

from __future__ import annotations

import pytest

from benchmarks import judging
from benchmarks.quality import evaluate, is_right, mcnemar, normalise, paired_interval, wilson
from benchmarks.quality_items import Item, items
from massgen_litellm.testing.openai_chat import BASE, KEY, Call, Reply, answer_then_vote, text


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


def test_the_paired_interval_of_the_difference():
    # 12 items only the team got, 3 only the member, of 100: +9%, and the interval says it is above zero.
    low, high = paired_interval(12, 3, 100)
    assert low == pytest.approx(0.0167, abs=0.001) and high == pytest.approx(0.1633, abs=0.001)
    assert paired_interval(5, 5, 100)[0] < 0 < paired_interval(5, 5, 100)[1]
    assert paired_interval(0, 0, 0) == (0.0, 0.0)


async def test_a_keyed_preset_is_skipped_with_its_reason_and_run_once_its_key_exists(
    fake, registered, monkeypatch, capsys
):
    # `ensemble` is three openai/gpt-4.1-mini agents. Without the key the harness says what is missing; with one
    # (here the scripted backend stands in for OpenAI) it runs the same comparison as for `local`.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert await evaluate("ensemble", items()[:2]) == []
    assert "massgen/ensemble: skipped, openai/gpt-4.1-mini needs OPENAI_API_KEY" in capsys.readouterr().out

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_BASE", BASE)
    # The three agents answer alike, so each run ends after its first round (unanimous).
    fake.script("gpt-4.1-mini", answer_then_vote("The capital of France is Paris."))
    rows = await evaluate("ensemble", items()[:2])
    out = capsys.readouterr().out
    assert [row["question"] for row in rows] == [item.question for item in items()[:2]]
    assert [row["team"]["right"] for row in rows] == [True, False]  # Paris is right only for the first item
    assert all(len(row["alone"]) == 3 for row in rows) and rows[0]["team"]["chosen_by"] == "unanimous"
    assert "| team (massgen/ensemble) | 1/2 " in out and out.count("alone (openai/gpt-4.1-mini) | 1/2 ") == 3
    assert "team against its best member" in out


async def test_the_judging_benchmark_counts_votes_and_second_answers(fake, registered, monkeypatch, capsys):
    # ensemble's agent1 (temperature 0.2) knows the capital of France and the others do not: the first item is
    # disputed, the second (arithmetic, nobody right) is not. Shown the answers, every agent votes for the right
    # one when it may only vote, and answers right when it may answer again.
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_BASE", BASE)

    def model(call: Call) -> Reply:
        if not call.answers:
            return text("Paris" if call.body.get("temperature") == 0.2 else "Lyon")
        if "may only vote" in call.prompt or "given all the answers you may" in call.prompt:
            return text(f"VOTE: {next(a for a, t in call.answers.items() if t == 'Paris')}\nREASON: Paris")
        return text("It is Paris.")

    fake.script("gpt-4.1-mini", model)
    await judging.evaluate("ensemble", items()[:2])
    out = capsys.readouterr().out
    assert "1 of 2 items had right and wrong first answers" in out
    assert "| may only vote | 3 | 3 | 3 (1.0) | 0 of 0 (0) |" in out
    assert "| may vote or answer | 3 | 0 | 0 (0.0) | 3 of 3 (1) |" in out
