"""Natural language inference: e-SNLI (with 3 human explanations) and ANLI round 1.

Labels are the strings ``entailment`` / ``neutral`` / ``contradiction`` (the words a teacher answers with
and a seq2seq student generates). Integer labels in the JSON files use the SNLI/ANLI convention
0 = entailment, 1 = neutral, 2 = contradiction (cross-checked against e-SNLI's own ``labels.*`` files in
the tests).
"""

from __future__ import annotations

import os

from datasets import Dataset

from toolkit.tasks.base import data_root
from toolkit.tasks.readers import DataFormatError, read_aligned, read_jsonl_numbered, require_file

NLI_LABELS = ("entailment", "neutral", "contradiction")
ESNLI_SPLITS = ("dev", "test")
ANLI1_SPLITS = ("valid", "test")
# The PaLM folder calls the e-SNLI dev split "valid"; accept both spellings everywhere.
_ESNLI_FILE_SPLIT = {"dev": ("dev", "valid"), "valid": ("dev", "valid"), "test": ("test", "test")}


def nli_label_name(value, path, line) -> str:
    """Map 0/1/2 or a label word to its name; anything else is a :class:`DataFormatError`."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(NLI_LABELS):
        return NLI_LABELS[value]
    if isinstance(value, str) and value.strip().lower() in NLI_LABELS:
        return value.strip().lower()
    raise DataFormatError(path, line, f"unknown NLI label {value!r} (expected 0/1/2 or {', '.join(NLI_LABELS)})")


def load_esnli(split: str = "dev", data_dir: str | os.PathLike | None = None, source: str = "esnli") -> Dataset:
    """Load e-SNLI as ``id, premise, hypothesis, label, explanations: list[str]`` (3 per row).

    Args:
        split: ``"dev"`` (9,842; alias ``"valid"``) or ``"test"`` (9,824).
        data_dir: Data root override.
        source: ``"esnli"`` reads the original line-aligned files in ``esnli/<split>/`` (tokenized text with
            spaces before punctuation; surrounding whitespace stripped); ``"palm"`` reads
            ``distill_step_by_step_palm/esnli/esnli_<split>.json`` (same pairs, detokenized), the inputs the
            PaLM rationales were generated for.

    Raises:
        ValueError: Unknown split or source.
        DataFormatError: Misaligned files or an unknown label (file + line).
    """
    if split not in _ESNLI_FILE_SPLIT:
        raise ValueError(f"e-SNLI split must be one of dev/valid/test, got {split!r}")
    esnli_split, palm_split = _ESNLI_FILE_SPLIT[split]
    root = data_root(data_dir)
    rows = []
    if source == "esnli":
        folder = root / "esnli" / esnli_split
        names = ["s1", "s2", "labels", "preproc1_expl_1", "preproc1_expl_2", "preproc1_expl_3"]
        cols = read_aligned({n: folder / f"{n}.{esnli_split}" for n in names})
        label_path = folder / f"labels.{esnli_split}"
        for row_index in range(len(cols["s1"])):
            rows.append(
                {
                    "id": f"esnli-{esnli_split}-{row_index}",
                    "premise": cols["s1"][row_index].strip(),
                    "hypothesis": cols["s2"][row_index].strip(),
                    "label": nli_label_name(cols["labels"][row_index], label_path, row_index + 1),
                    "explanations": [cols[f"preproc1_expl_{k}"][row_index].strip() for k in (1, 2, 3)],
                }
            )
    elif source == "palm":
        path = require_file(root / "distill_step_by_step_palm" / "esnli" / f"esnli_{palm_split}.json")
        for lineno, raw in read_jsonl_numbered(path):
            _require(raw, ("premise", "hypothesis", "label"), path, lineno)
            rows.append(
                {
                    "id": f"esnli-{esnli_split}-{lineno - 1}",
                    "premise": raw["premise"],
                    "hypothesis": raw["hypothesis"],
                    "label": nli_label_name(raw["label"], path, lineno),
                    "explanations": [str(raw.get(f"explanation_{k}", "")) for k in (1, 2, 3)],
                }
            )
    else:
        raise ValueError(f"unknown e-SNLI source {source!r} (use 'esnli' or 'palm')")
    return Dataset.from_list(rows)


def load_anli1(split: str = "valid", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load ANLI round 1 from the PaLM folder as ``id, premise, hypothesis, label, reason``.

    Args:
        split: ``"valid"`` (1,000; alias ``"dev"``) or ``"test"`` (1,000).

    Raises:
        DataFormatError: A row lacks a field or has an unknown label (file + line).
    """
    split = "valid" if split == "dev" else split
    if split not in ANLI1_SPLITS:
        raise ValueError(f"ANLI R1 split must be one of {ANLI1_SPLITS}, got {split!r}")
    path = require_file(data_root(data_dir) / "distill_step_by_step_palm" / "anli1" / f"anli1_{split}.json")
    rows = []
    for lineno, raw in read_jsonl_numbered(path):
        _require(raw, ("premise", "hypothesis", "label"), path, lineno)
        rows.append(
            {
                "id": str(raw.get("uid", f"anli1-{split}-{lineno - 1}")),
                "premise": raw["premise"],
                "hypothesis": raw["hypothesis"],
                "label": nli_label_name(raw["label"], path, lineno),
                "reason": str(raw.get("reason") or ""),
            }
        )
    return Dataset.from_list(rows)


def format_nli_input(premise: str, hypothesis: str) -> str:
    """The student's input for one NLI pair."""
    return f"Premise: {premise}\nHypothesis: {hypothesis}"


def _require(raw: dict, keys, path, lineno) -> None:
    missing = [k for k in keys if k not in raw]
    if missing:
        raise DataFormatError(path, lineno, f"missing field(s) {missing}")
