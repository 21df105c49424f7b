"""Multiple-choice commonsense QA: CommonsenseQA (CQA) as used by Distilling step-by-step.

The data is ``distill_step_by_step_palm/cqa/cqa_<split>.json`` (JSON lines with ``question``, five
``choices`` and the ``answer`` text). Choice letters ``(a)``-``(e)`` follow the list order; the PaLM
rationales refer to choices by those letters.
"""

from __future__ import annotations

import os

from datasets import Dataset

from toolkit.tasks.base import data_root
from toolkit.tasks.readers import DataFormatError, read_jsonl_numbered, require_file

CQA_SPLITS = ("train", "test")
CHOICE_LETTERS = "abcdefghij"


def cqa_path(split: str, data_dir: str | os.PathLike | None = None):
    """Path of the CQA inputs for ``split`` (``train`` 9,741 / ``test`` 1,221)."""
    if split not in CQA_SPLITS:
        raise ValueError(f"CQA split must be one of {CQA_SPLITS}, got {split!r}")
    return require_file(data_root(data_dir) / "distill_step_by_step_palm" / "cqa" / f"cqa_{split}.json")


def load_cqa(split: str = "train", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load CQA as ``id, question, choices: list[str], answer, label`` (``label`` = ``answer`` text).

    Raises:
        DataFormatError: A row lacks a field, or its answer is not one of its choices (file + line).
    """
    path = cqa_path(split, data_dir)
    rows = []
    for lineno, raw in read_jsonl_numbered(path):
        missing = [k for k in ("id", "question", "choices", "answer") if k not in raw]
        if missing:
            raise DataFormatError(path, lineno, f"missing field(s) {missing}")
        choices = [str(c) for c in raw["choices"]]
        if raw["answer"] not in choices:
            raise DataFormatError(path, lineno, f"answer {raw['answer']!r} is not one of the choices {choices}")
        rows.append(
            {
                "id": raw["id"],
                "question": raw["question"],
                "choices": choices,
                "answer": raw["answer"],
                "label": raw["answer"],
            }
        )
    return Dataset.from_list(rows)


def format_choices(choices: list[str]) -> str:
    """``"Answer Choices:\\n(a) x\\n(b) y ..."``: the layout of the PaLM few-shot prompts."""
    lines = [f"({CHOICE_LETTERS[i]}) {c}" for i, c in enumerate(choices)]
    return "Answer Choices:\n" + "\n".join(lines)


def format_cqa_input(question: str, choices: list[str]) -> str:
    """The student's input for one CQA item: the question, then the lettered choices."""
    return f"{question}\n{format_choices(choices)}"
