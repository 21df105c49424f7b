"""Distilling step-by-step: refuse training or model selection on test rows (by provenance and by shared inputs).

A rationale set generated from the test split must never train or select the student: :func:`check_contamination`
refuses it unless the caller explicitly allows it (the run then records it in ``metrics.json``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

PALM_PREFIX = "palm:"

__all__ = ["ContaminationError", "check_contamination", "generation_split"]


class ContaminationError(ValueError):
    """Training or validation rows come from the test split, or share inputs with the scored test rows."""


def generation_split(source: str, split: str) -> str | None:
    """The split a rationale source's rows were generated from, when that is recorded (else ``None``).

    ``palm:<task>`` and ``DatasetDict`` folders: ``split`` itself. A ``data_gen`` output (the job folder, its
    ``dataset/`` or its ``data.jsonl``): the job's ``split`` in the folder's ``config.json``.
    """
    if source.startswith(PALM_PREFIX):
        return split
    path = Path(source)
    if (path / "dataset_dict.json").is_file():
        return split
    for folder in ([path] if path.is_dir() else []) + [path.parent]:
        config = folder / "config.json"
        if not config.is_file():
            continue
        try:
            job = json.loads(config.read_text(encoding="utf-8")).get("job")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(job, dict) and job.get("split"):
            return str(job["split"])
    return None


def check_contamination(
    *,
    train: tuple[str, str],
    test: tuple[str, str],
    seen_inputs: Sequence[str],
    test_inputs: Sequence[str],
    dev: tuple[str, str] | None = None,
    allow: bool = False,
) -> dict:
    """Refuse training or model selection on test rows: by provenance, and by inputs shared with the test rows.

    Args:
        train / dev / test: ``(source, split)`` of each part (``dev=None`` when it is carved from train).
        seen_inputs: the inputs of every row that trains or selects the student (train and validation).
        test_inputs: the inputs of the scored test rows.
        allow: log the findings and go on instead of raising; the report says so.

    Returns:
        ``{"train_generated_from", "dev_generated_from", "n_test_inputs_seen", "problems", "allowed"}``.

    Raises:
        ContaminationError: a part was generated from a ``test`` split or is the test source/split itself, or a test
            input also trains/selects the student (the old warning, now an error), and ``allow`` is false.
    """
    problems, report = [], {}
    for role, part in (("train", train), ("dev", dev)):
        generated = generation_split(*part) if part else None
        report[f"{role}_generated_from"] = generated
        if part and (generated == "test" or tuple(part) == tuple(test)):
            problems.append(f"the {role} rows ({part[0]} [{part[1]}]) were generated from the test split")
    seen = set(seen_inputs)
    overlap = sum(x in seen for x in test_inputs)
    if overlap:
        problems.append(f"{overlap} of {len(test_inputs)} test inputs also train or select the student")
    report.update(n_test_inputs_seen=overlap, problems=problems, allowed=bool(problems) and allow)
    if problems and not allow:
        raise ContaminationError(
            "refusing to train on test data: " + "; ".join(problems) + ". The test score would be contaminated. "
            "Use rationales generated from a train split (data_gen/rationales.py --split train), or pass "
            "--allow_test_contamination true to run anyway (recorded in metrics.json)."
        )
    if problems:
        logger.warning("test contamination allowed by the caller: %s", "; ".join(problems))
    return report
