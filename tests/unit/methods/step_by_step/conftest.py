"""The tiny students (T5 and Llama) and the two-task features the collator and trainer tests share."""

from __future__ import annotations

import pytest

from toolkit.models.students import load_student

TWO_TASK_FEATURES = [
    {"input": "Jack had 8 apples and gave 3 away.", "label": "(8 - 3)", "rationale": "8 - 3 = 5 left."},
    {"input": "A man plays a guitar.", "label": "neutral", "rationale": "Not every song is music."},
]

# Two rows as data_gen/rationales.py saves them: one parsed, one parse failure.
SAVED_ROWS = [
    {
        "input": "Premise: a man plays. Hypothesis: a person plays.",
        "label": 0,
        "rationale": "A man is a person.",
        "teacher_label": "entailment",
        "parse_ok": True,
        "teacher_id": "hf:tiny",
        "template_hash": "abc123",
    },
    {
        "input": "Premise: a dog runs. Hypothesis: a cat runs.",
        "label": 2,
        "rationale": None,
        "teacher_label": None,
        "parse_ok": False,
        "teacher_id": "hf:tiny",
        "template_hash": "abc123",
    },
]


@pytest.fixture(params=["t5", "llama"])
def student(request, tiny_t5_dir, tiny_llama_dir):
    path = tiny_t5_dir if request.param == "t5" else tiny_llama_dir
    model, tokenizer, seq2seq = load_student(str(path))
    model.eval()  # no dropout: losses must be reproducible
    return model, tokenizer, seq2seq


@pytest.fixture
def features() -> list[dict]:
    return [dict(feature) for feature in TWO_TASK_FEATURES]


@pytest.fixture
def saved_rows() -> list[dict]:
    return [dict(row) for row in SAVED_ROWS]
