"""Grammatical error correction: JFLEG (fluency-oriented GEC, 4 references per sentence).

Only the JFLEG dev split (754 sentences) is in the data folder; there is no English GEC training split,
so recipes split dev deterministically (:func:`toolkit.tasks.splits.deterministic_split`).
"""

from __future__ import annotations

import os

from datasets import Dataset

from toolkit.tasks.base import data_root
from toolkit.tasks.readers import read_aligned

JFLEG_SPLITS = ("dev",)
N_JFLEG_REFS = 4


def load_jfleg(split: str = "dev", data_dir: str | os.PathLike | None = None, spellchecked: bool = False) -> Dataset:
    """Load JFLEG as ``id, source, references`` (4 references per row).

    The files are tokenized text with a trailing space on most lines; that space is stripped from the
    source and every reference (it carries no information and would otherwise leak into model targets).

    Args:
        split: Only ``"dev"`` exists in the data folder.
        data_dir: Data root override (see :func:`toolkit.tasks.base.data_root`).
        spellchecked: Use ``dev.spellchecked.src`` (the source after the JFLEG authors' spell-checker) instead
            of the raw learner sentence.

    Returns:
        ``Dataset`` with ``id`` (``"jfleg-dev-<i>"``), ``source`` and ``references: list[str]``.

    Raises:
        ValueError: Unknown split.
        DataFormatError: The source and reference files are not line-aligned.
    """
    if split not in JFLEG_SPLITS:
        raise ValueError(f"JFLEG split {split!r} not available here (have: {', '.join(JFLEG_SPLITS)})")
    folder = data_root(data_dir) / "jfleg" / split
    src_name = f"{split}.spellchecked.src" if spellchecked else f"{split}.src"
    files = {"source": folder / src_name}
    files.update({f"ref{i}": folder / f"{split}.ref{i}" for i in range(N_JFLEG_REFS)})
    cols = read_aligned(files)
    num_rows = len(cols["source"])
    return Dataset.from_dict(
        {
            "id": [f"jfleg-{split}-{i}" for i in range(num_rows)],
            "source": [s.strip() for s in cols["source"]],
            "references": [[cols[f"ref{r}"][i].strip() for r in range(N_JFLEG_REFS)] for i in range(num_rows)],
        }
    )
