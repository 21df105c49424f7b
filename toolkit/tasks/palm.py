"""The Distilling step-by-step data with the PaLM-540B rationales (``distill_step_by_step_palm/<task>/``).

Layout per task: ``<task>_<split>.json`` holds the inputs as JSON lines; ``llm/<split>_CoT_<i>.json`` are
JSON lists of raw PaLM completions which, concatenated in index order ``i = 0, 1, ...``, align one-to-one
with the input lines. A raw completion looks like::

    The answer must be a place in the desert. ... So the answer is (d) mountains.

    Q: What is the best way to get rid of a headache? ...      <- the model kept writing the next shot

:func:`parse_completion` cuts the continuation, splits at the answer phrase, and normalises the label per
task; a completion it cannot read gets label ``None`` (counted and logged by :func:`load_palm`), never an
empty string.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, Value

from toolkit.tasks.base import data_root
from toolkit.tasks.math import format_number, load_svamp, parse_number
from toolkit.tasks.nli import NLI_LABELS, format_nli_input, load_anli1, load_esnli
from toolkit.tasks.qa import CHOICE_LETTERS, format_cqa_input, load_cqa
from toolkit.tasks.readers import DataFormatError, read_json_list

logger = logging.getLogger(__name__)

PALM_SPLITS: dict[str, tuple[str, ...]] = {
    "cqa": ("train", "test"),
    "svamp": ("train", "test"),
    "anli1": ("valid", "test"),
    "esnli": ("valid", "test"),
}
PALM_TASKS = tuple(PALM_SPLITS)

# The next few-shot example the model started writing: a line beginning with "Q:" (cqa/svamp) or
# "Premise:" (anli1/esnli). Everything from there on is not part of this answer.
_CONTINUATION = re.compile(r"\n\s*(?:Q:|Premise:)")
# Answer phrases, most specific first: "The answer is 71. So the answer is entailment." must read the
# "So the answer is"; e-SNLI's prompt ends with "Answer: <label>" instead.
_ANSWER_PHRASES: dict[str, tuple[str, ...]] = {
    "cqa": (r"so the answer is", r"the answer is"),
    "svamp": (r"so the answer is", r"the answer is"),
    "anli1": (r"so the answer is", r"the answer is", r"\banswer:"),
    "esnli": (r"\banswer:", r"so the answer is", r"the answer is"),
}
_CHOICE = re.compile(r"^\(?([a-j])\)\s*(.*)$", re.IGNORECASE | re.DOTALL)
_NLI_SYNONYMS = {
    "entailment": "entailment",
    "entails": "entailment",
    "entailed": "entailment",
    "neutral": "neutral",
    "contradiction": "contradiction",
    "contradicts": "contradiction",
    "contradictory": "contradiction",
}


def _check_task(task: str) -> None:
    if task not in PALM_SPLITS:
        raise ValueError(f"unknown PaLM task {task!r} (have: {', '.join(PALM_TASKS)})")


def parse_completion(task: str, text: str, choices: Sequence[str] | None = None) -> tuple[str, str | None]:
    """Split a raw teacher completion into ``(rationale, label)``.

    Steps: drop the continuation (from the first line starting with ``Q:`` / ``Premise:``), find the answer
    phrase (``So the answer is`` before ``The answer is``; ``Answer:`` for e-SNLI; case-insensitive), keep
    the text before it as the rationale and read the label from the rest of that line:

    - ``cqa``: ``"(d) math problem."`` -> the choice text. With ``choices`` the letter picks the choice
      (``None`` if the letter is out of range); without, the text after the letter. A bare answer without
      a letter must match a choice when ``choices`` are given.
    - ``svamp``: the arithmetic after the phrase, evaluated safely (``"(79 - 53)."`` -> ``"26"``), or the
      first number in it; formatted by :func:`toolkit.tasks.math.format_number`.
    - ``anli1`` / ``esnli``: the first word, mapped to ``entailment`` / ``neutral`` / ``contradiction``.

    Args:
        task: One of ``cqa``, ``svamp``, ``anli1``, ``esnli``.
        text: The raw completion.
        choices: CQA answer choices of the row (optional).

    Returns:
        ``(rationale, label)``; ``label`` is ``None`` when no answer phrase or no valid label was found (the
        rationale is then the cut text, still usable for inspection).
    """
    _check_task(task)
    head = _CONTINUATION.split(text, maxsplit=1)[0].strip()
    for phrase in _ANSWER_PHRASES[task]:
        match = re.search(phrase, head, flags=re.IGNORECASE)
        if match:
            break
    else:
        return head, None
    rationale = head[: match.start()].rstrip().rstrip(",;").rstrip()
    answer = head[match.end() :].strip().split("\n", 1)[0].strip()
    return rationale, _normalise_label(task, answer, choices)


def _normalise_label(task: str, answer: str, choices: Sequence[str] | None) -> str | None:
    if task == "cqa":
        return _cqa_label(answer, choices)
    if task == "svamp":
        value = parse_number(answer)
        return None if value is None else format_number(value)
    word = re.sub(r"[^a-z]", "", answer.split()[0].lower()) if answer.split() else ""
    label = _NLI_SYNONYMS.get(word)
    return label if label in NLI_LABELS else None


def _cqa_label(answer: str, choices: Sequence[str] | None) -> str | None:
    answer = answer.strip()
    match = _CHOICE.match(answer)
    if match:
        index = CHOICE_LETTERS.index(match.group(1).lower())
        if choices is not None:
            return choices[index] if index < len(choices) else None
        text = match.group(2).strip().rstrip(".").strip()
        return text or None
    text = answer.rstrip(".").strip()
    if not text:
        return None
    if choices is None:
        return text
    for choice in choices:
        if choice.lower() == text.lower():
            return choice
    return None


def format_input(task: str, row: Mapping[str, Any]) -> str:
    """The student's input text for one row of a step-by-step task.

    - ``cqa``: the question, then ``Answer Choices:`` and ``(a) ...`` lines (the PaLM prompt layout);
    - ``svamp``: the problem text (``question`` column);
    - ``anli1`` / ``esnli``: ``"Premise: ...\\nHypothesis: ..."``.
    """
    _check_task(task)
    if task == "cqa":
        return format_cqa_input(row["question"], list(row["choices"]))
    if task == "svamp":
        return row["question"]
    return format_nli_input(row["premise"], row["hypothesis"])


def completion_files(task: str, split: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The ``llm/<split>_CoT_<i>.json`` files of a task/split, in index order (0, 1, 2, ... not 0, 1, 10)."""
    _check_task(task)
    folder = data_root(data_dir) / "distill_step_by_step_palm" / task / "llm"
    pattern = re.compile(rf"^{re.escape(split)}_CoT_(\d+)\.json$")
    found = sorted(
        (int(m.group(1)), p) for p in (folder.iterdir() if folder.is_dir() else []) if (m := pattern.match(p.name))
    )
    if not found:
        raise FileNotFoundError(f"no PaLM completions {folder}/{split}_CoT_<i>.json")
    indices = [i for i, _ in found]
    if indices != list(range(len(indices))):
        raise DataFormatError(folder, None, f"completion files for {split!r} are not numbered 0..n-1: {indices}")
    return [p for _, p in found]


def read_completions(task: str, split: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """All raw PaLM completions of a task/split, concatenated in file-index order."""
    completions: list[str] = []
    for path in completion_files(task, split, data_dir):
        items = read_json_list(path)
        for item_index, item in enumerate(items):
            if not isinstance(item, str):
                raise DataFormatError(path, None, f"item {item_index} is a {type(item).__name__}, expected a string")
        completions.extend(items)
    return completions


def _load_inputs(task: str, split: str, data_dir) -> tuple[Dataset, Path]:
    root = data_root(data_dir) / "distill_step_by_step_palm" / task
    if task == "cqa":
        return load_cqa(split, data_dir), root / f"cqa_{split}.json"
    if task == "svamp":
        return load_svamp(split, data_dir, source="palm"), root / f"svamp_{split}.json"
    if task == "anli1":
        return load_anli1(split, data_dir), root / f"anli1_{split}.json"
    return load_esnli(split, data_dir, source="palm"), root / f"esnli_{split}.json"


def load_palm(task: str, split: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load one PaLM step-by-step task split with its teacher completions, aligned per row.

    Args:
        task: ``cqa`` (train 9,741 / test 1,221), ``svamp`` (train 800 / test 200), ``anli1``
            (valid / test 1,000 each) or ``esnli`` (valid 9,842 / test 9,824).
        split: One of :data:`PALM_SPLITS` ``[task]`` (``dev`` is accepted for ``valid``).
        data_dir: Data root override.

    Returns:
        The task's input columns (see :mod:`toolkit.tasks.qa`, :mod:`~toolkit.tasks.math`,
        :mod:`~toolkit.tasks.nli`) with gold ``label``, plus ``input`` (:func:`format_input`),
        ``teacher_completion`` (raw), ``rationale``, ``teacher_label`` (``None`` on parse failure) and
        ``parse_ok`` — the same columns the rationales generation job writes.

    Raises:
        DataFormatError: The completions do not line up with the inputs (names the input file and the
            completion files).
    """
    _check_task(task)
    split = "valid" if split == "dev" and "valid" in PALM_SPLITS[task] else split
    if split not in PALM_SPLITS[task]:
        raise ValueError(f"PaLM task {task!r} has splits {PALM_SPLITS[task]}, not {split!r}")
    inputs, input_path = _load_inputs(task, split, data_dir)
    completions = read_completions(task, split, data_dir)
    if len(completions) != len(inputs):
        files = ", ".join(p.name for p in completion_files(task, split, data_dir))
        raise DataFormatError(
            input_path,
            None,
            f"{len(inputs)} input rows but {len(completions)} completions in {input_path.parent / 'llm'} ({files})",
        )
    choices = inputs["choices"] if task == "cqa" else [None] * len(inputs)
    parsed = [parse_completion(task, text, c) for text, c in zip(completions, choices)]
    n_ok = sum(label is not None for _, label in parsed)
    logger.info(
        "PaLM %s/%s: parsed %d/%d completions (%.2f%%)", task, split, n_ok, len(parsed), 100 * n_ok / len(parsed)
    )
    inputs = inputs.add_column("input", [format_input(task, row) for row in inputs])
    inputs = inputs.add_column("teacher_completion", completions)
    inputs = inputs.add_column("rationale", [r for r, _ in parsed])
    inputs = inputs.add_column("teacher_label", [lab for _, lab in parsed], feature=Value("string"))
    return inputs.add_column("parse_ok", [lab is not None for _, lab in parsed])
