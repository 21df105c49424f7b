"""Distilling step-by-step scoring: map a generated answer to the task's label and say whether it is right.

CQA answers are matched to one of the five choices (text, ``(c)`` letters, containment, fuzzy); NLI answers to the
earliest label they name; SVAMP equations are evaluated with :func:`toolkit.tasks.math.safe_eval` (never ``eval``)
and compared by value. The same functions normalise gold and teacher labels into the targets the student learns.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from toolkit.tasks import math as math_task

TASKS = ("cqa", "svamp", "anli1", "esnli")
NLI_LABELS = ("entailment", "neutral", "contradiction")

__all__ = [
    "NLI_LABELS",
    "TASKS",
    "canonical_label",
    "is_correct",
    "match_choice",
    "nli_label",
    "score_predictions",
    "teacher_stats",
]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


_LETTER = re.compile(r"^\s*\(?([a-e])\)(?:\s+|$)", re.IGNORECASE)
# Below this difflib ratio a generated answer is considered to name no choice (counted wrong).
FUZZY_CHOICE_THRESHOLD = 0.6


def match_choice(pred: str | None, choices: Sequence[str]) -> int | None:
    """Map generated text to the index of a multiple-choice option (CQA), or ``None``.

    Rules, first hit wins: exact (case/punctuation-insensitive) match; a leading letter ``(c)`` / ``c)`` (its
    remaining text must not name a *different* choice); the longest choice contained in the text as whole words;
    the text contained in exactly one choice; otherwise the closest choice by difflib ratio when it reaches
    ``FUZZY_CHOICE_THRESHOLD``.
    """
    if pred is None or not choices:
        return None
    norm_choices = [_norm(c) for c in choices]
    text = _norm(pred)
    if text in norm_choices:
        return norm_choices.index(text)
    letter = _LETTER.match(str(pred))
    if letter:
        index = "abcde".index(letter.group(1).lower())
        rest = _norm(str(pred)[letter.end() :])
        if index < len(choices) and (not rest or rest == norm_choices[index] or rest not in norm_choices):
            return index
        if rest in norm_choices:
            return norm_choices.index(rest)
    if not text:
        return None
    padded = f" {text} "
    contained = [i for i, c in enumerate(norm_choices) if c and f" {c} " in padded]
    if contained:
        return max(contained, key=lambda i: len(norm_choices[i]))
    containing = [i for i, c in enumerate(norm_choices) if f" {text} " in f" {c} "]
    if len(containing) == 1:
        return containing[0]
    ratios = [difflib.SequenceMatcher(None, text, c).ratio() for c in norm_choices]
    best = max(range(len(ratios)), key=ratios.__getitem__)
    return best if ratios[best] >= FUZZY_CHOICE_THRESHOLD else None


def nli_label(pred: str | None) -> str | None:
    """The NLI label a generated text names (the earliest of entailment/neutral/contradiction), or ``None``."""
    if pred is None:
        return None
    text = _norm(pred)
    hits = [(m.start(), label) for label in NLI_LABELS for m in [re.search(rf"\b{label}\b", text)] if m]
    return min(hits)[1] if hits else None


def _numbers_match(pred: str | None, gold: str) -> bool:
    """SVAMP: both sides evaluated by the safe evaluator; equality per ``toolkit.tasks.math.numbers_match``."""
    if pred is None:
        return False
    expr = str(pred).split("=")[0].strip()  # "(10 * 45) = 450" -> score the equation, not the stated result
    try:
        value = math_task.safe_eval(expr)
        gold_value = math_task.safe_eval(str(gold))
    except Exception:  # noqa: BLE001 - any unparsable / invalid expression is simply a wrong answer
        return False
    if value is None or gold_value is None:
        return False
    return bool(math_task.numbers_match(value, gold_value))


def is_correct(task: str, pred: str | None, gold: Any, choices: Sequence[str] | None = None) -> bool:
    """Whether a prediction answers a row correctly (per-task matching, see the module docstring)."""
    if task == "svamp":
        return _numbers_match(pred, gold)
    if task == "cqa":
        if not choices:
            raise ValueError("CQA scoring needs the row's answer choices")
        gold_index = match_choice(str(gold), choices)
        return gold_index is not None and match_choice(pred, choices) == gold_index
    if task in ("anli1", "esnli"):
        return nli_label(pred) == canonical_label(task, gold)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def canonical_label(task: str, value: Any, choices: Sequence[str] | None = None) -> str | None:
    """Normalise a gold or teacher label into the target text the student learns.

    NLI integer ids map to ``entailment/neutral/contradiction``; a CQA label naming a choice (``"(c) wooded
    area"``) becomes that choice's text, so gt and llm targets share one format; SVAMP keeps its expression.
    Returns ``None`` for a missing label.
    """
    if value is None:
        return None
    if task in ("anli1", "esnli"):
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(NLI_LABELS):
                raise ValueError(f"NLI label id {value} outside 0..2")
            return NLI_LABELS[value]
        return nli_label(str(value)) or str(value).strip() or None
    if task == "cqa" and choices:
        index = match_choice(str(value), choices)
        return choices[index] if index is not None else (str(value).strip() or None)
    return str(value).strip() or None


def score_predictions(task: str, preds: Sequence[str | None], rows: Sequence[dict]) -> tuple[float, list[bool]]:
    """Accuracy of ``preds`` against ``rows`` (each with ``gold`` and, for CQA, ``choices``)."""
    if len(preds) != len(rows):
        raise ValueError(f"{len(preds)} predictions for {len(rows)} rows")
    correct = [is_correct(task, p, r["gold"], r.get("choices")) for p, r in zip(preds, rows)]
    return (sum(correct) / len(correct) if correct else 0.0), correct


def teacher_stats(task: str, rows: Sequence[dict]) -> dict:
    """Parse rate and teacher accuracy vs gold (over parsed rows, and over all rows with failures as wrong)."""
    n_rows = len(rows)
    parsed = [r for r in rows if r["parse_ok"]]
    correct = sum(is_correct(task, r["teacher_label"], r["gold"], r["choices"]) for r in parsed)
    return {
        "n": n_rows,
        "n_parsed": len(parsed),
        "n_parse_failures": n_rows - len(parsed),
        "parse_rate": len(parsed) / n_rows if n_rows else 0.0,
        "teacher_accuracy_parsed": correct / len(parsed) if parsed else None,
        "teacher_accuracy_all": correct / n_rows if n_rows else None,
    }
