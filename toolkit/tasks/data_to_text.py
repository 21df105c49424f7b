"""Data-to-text: the E2E NLG challenge (restaurant meaning representations -> descriptions).

The CSVs have one row per (MR, reference) pair; rows sharing an MR are that MR's multiple references.
Loaders group them: one row per MR in first-seen order, with ``references: list[str]`` in file order.
There is no E2E train split in the data folder; split dev with
:func:`toolkit.tasks.splits.deterministic_split` (one row per MR already keeps an MR's references together).
"""

from __future__ import annotations

import os
import re

from datasets import Dataset

from toolkit.tasks.base import data_root
from toolkit.tasks.readers import DataFormatError, read_delimited_numbered

E2E_FILES = {"dev": "devset.csv", "test": "testset_w_refs.csv"}
_ATTRIBUTE = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]\s*")


def parse_mr(mr: str) -> dict[str, str]:
    """``"name[Blue Spice], eatType[coffee shop]"`` -> ``{"name": "Blue Spice", "eatType": "coffee shop"}``.

    Raises:
        ValueError: Text between attributes that is not ``attr[value]``.
    """
    out: dict[str, str] = {}
    for part in mr.split("],"):
        part = part if part.endswith("]") else part + "]"
        match = _ATTRIBUTE.fullmatch(part)
        if not match:
            raise ValueError(f"malformed meaning representation {mr!r} near {part!r}")
        out[match.group(1)] = match.group(2)
    return out


def load_e2e(split: str = "dev", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load E2E NLG grouped per MR: dev 547 MRs (4,672 rows), test 630 MRs (4,693 rows).

    Args:
        split: ``"dev"`` (``devset.csv``) or ``"test"`` (``testset_w_refs.csv``).
        data_dir: Data root override.

    Returns:
        ``id, mr, references: list[str]`` (MRs in first-seen order, references in file order).

    Raises:
        DataFormatError: Missing ``mr``/``ref`` columns, or an empty MR or reference (file + line).
    """
    if split not in E2E_FILES:
        raise ValueError(f"E2E split must be one of {tuple(E2E_FILES)}, got {split!r}")
    path = data_root(data_dir) / "e2e_nlg" / E2E_FILES[split]
    rows = read_delimited_numbered(path)
    grouped: dict[str, list[str]] = {}
    for lineno, row in rows:
        if "mr" not in row or "ref" not in row:
            raise DataFormatError(path, 1, f"expected columns 'mr' and 'ref', got {sorted(row)}")
        mr, ref = row["mr"].strip(), row["ref"].strip()
        if not mr or not ref:
            raise DataFormatError(path, lineno, "empty mr or ref")
        grouped.setdefault(mr, []).append(ref)
    return Dataset.from_dict(
        {
            "id": [f"e2e-{split}-{i}" for i in range(len(grouped))],
            "mr": list(grouped),
            "references": list(grouped.values()),
        }
    )
