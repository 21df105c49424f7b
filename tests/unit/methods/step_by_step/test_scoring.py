"""Answer matching per task, label normalisation, accuracy and the teacher's own statistics."""

from __future__ import annotations

import pytest

from toolkit.methods.step_by_step import scoring

CHOICES = ["british columbia", "body of water", "wooded area", "pay debts", "zoo"]


@pytest.mark.parametrize(
    "pred, expected",
    [
        ("wooded area", 2),
        ("Wooded Area.", 2),
        ("(c) wooded area", 2),
        ("c) wooded area", 2),
        ("(c)", 2),
        ("(a) wooded area", 2),  # the letter disagrees with a verbatim choice: the text wins
        ("the beaver goes to the wooded area for wood", 2),
        ("body", 1),  # contained in exactly one choice
        ("woded area", 2),  # typo: fuzzy match above the threshold
        ("a spaceship", None),
        ("", None),
        (None, None),
    ],
)
def test_match_choice(pred, expected):
    assert scoring.match_choice(pred, CHOICES) == expected


def test_match_choice_prefers_longest_contained_choice():
    assert scoring.match_choice("go to the ice cream shop", ["ice", "ice cream shop", "bar"]) == 1


@pytest.mark.parametrize(
    "pred, expected",
    [
        ("neutral", "neutral"),
        ("Answer: contradiction.", "contradiction"),
        ("entailment, not neutral", "entailment"),  # earliest label named
        ("entail", None),
        ("", None),
    ],
)
def test_nli_label(pred, expected):
    assert scoring.nli_label(pred) == expected


@pytest.mark.parametrize(
    "pred, correct",
    [
        ("(10 * 45)", True),
        ("( 10.0 * 45.0 )", True),
        ("45 * 10", True),  # same value, different equation: SVAMP is scored by value
        ("(10 * 45) = 450", True),  # the stated result is ignored, the equation is scored
        ("10 * 46", False),
        ("__import__('os')", False),  # never evaluated: the safe evaluator rejects it
        ("10 / 0", False),
        ("", False),
        (None, False),
    ],
)
def test_svamp_correct(pred, correct):
    assert scoring.is_correct("svamp", pred, "( 10.0 * 45.0 )") is correct


def test_svamp_tolerance_absorbs_division_rounding():
    assert scoring.is_correct("svamp", "(10 / 3)", "( 3.33333 )")
    assert not scoring.is_correct("svamp", "(10 / 3)", "( 3.3 )")


def test_cqa_and_nli_correct():
    assert scoring.is_correct("cqa", "(c) wooded area", "wooded area", CHOICES)
    assert not scoring.is_correct("cqa", "zoo", "wooded area", CHOICES)
    assert scoring.is_correct("esnli", "neutral", 1)
    assert not scoring.is_correct("anli1", "neutral", "contradiction")
    with pytest.raises(ValueError, match="choices"):
        scoring.is_correct("cqa", "zoo", "zoo", [])
    with pytest.raises(ValueError, match="unknown task"):
        scoring.is_correct("gsm8k", "1", "1")


def test_canonical_label():
    assert scoring.canonical_label("anli1", 2) == "contradiction"
    assert scoring.canonical_label("esnli", "Entailment.") == "entailment"
    assert scoring.canonical_label("cqa", "(c) wooded area", CHOICES) == "wooded area"
    assert scoring.canonical_label("svamp", " (1 + 2) ") == "(1 + 2)"
    assert scoring.canonical_label("svamp", None) is None
    with pytest.raises(ValueError, match="outside"):
        scoring.canonical_label("anli1", 3)


def test_score_predictions():
    rows = [{"gold": "neutral"}, {"gold": "entailment"}]
    acc, correct = scoring.score_predictions("esnli", ["neutral", "contradiction"], rows)
    assert acc == 0.5 and correct == [True, False]
    with pytest.raises(ValueError, match="2 rows"):
        scoring.score_predictions("esnli", ["neutral"], rows)


def _rows():
    return [
        {
            "id": str(i),
            "input": f"q{i}",
            "gold": f"({i} + 1)",
            "choices": [],
            "teacher_label": f"({i} + 1)",
            "rationale": f"add {i} and 1",
            "parse_ok": True,
        }
        for i in range(10)
    ]


def test_teacher_stats():
    rows = _rows()
    rows[0].update(parse_ok=False, teacher_label=None)
    rows[1].update(teacher_label="(7 * 7)")
    stats = scoring.teacher_stats("svamp", rows)
    assert stats["n_parsed"] == 9 and stats["parse_rate"] == 0.9
    assert stats["teacher_accuracy_parsed"] == pytest.approx(8 / 9)
    assert stats["teacher_accuracy_all"] == pytest.approx(0.8)
