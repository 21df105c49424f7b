"""One reproducible, group-aware train/dev/test split for every loader and recipe."""

from __future__ import annotations

import json
import random
from typing import Any

from datasets import Dataset, DatasetDict

__all__ = ["deterministic_split"]


def _resolve_size(size: int | float, num_rows: int, name: str) -> int:
    if isinstance(size, bool) or size < 0:
        raise ValueError(f"{name} must be a non-negative int (rows) or a float fraction in [0, 1), got {size!r}")
    if isinstance(size, float):
        if size >= 1:
            raise ValueError(f"{name} as a fraction must be < 1, got {size}")
        return int(round(size * num_rows))
    return int(size)


def deterministic_split(
    ds: Dataset,
    *,
    dev_size: int | float,
    test_size: int | float,
    seed: int = 42,
    group_column: str | None = None,
) -> DatasetDict:
    """Split one ``Dataset`` into train/dev/test, reproducibly and (optionally) group-aware.

    The units of the split are groups: each distinct value of ``group_column`` (or each row when no
    column is given). Units are listed in first-seen order and shuffled with ``random.Random(seed)``, so
    the result depends only on the data and the seed (not on ``PYTHONHASHSEED`` or the machine). Units are
    then dealt to ``test`` until it holds at least ``test_size`` rows, then to ``dev`` likewise, and the
    rest go to ``train``. Hence **rows sharing a group value never straddle two splits** (e.g. all
    references of one E2E meaning representation, or every paraphrase of one SLURP utterance, stay
    together), and with groups the dev/test sizes are reached or exceeded by at most one group. Within
    each split, rows keep their original order.

    Args:
        ds: The dataset to split.
        dev_size: Rows in dev: an int, or a float fraction of ``len(ds)``.
        test_size: Rows in test: an int, or a float fraction of ``len(ds)``.
        seed: Shuffle seed.
        group_column: Column whose equal values must stay in one split.

    Returns:
        ``DatasetDict`` with ``train``, ``dev`` and ``test``.

    Raises:
        ValueError: Bad sizes, sizes leaving no training rows, or an unknown column.
    """
    num_rows = len(ds)
    n_dev = _resolve_size(dev_size, num_rows, "dev_size")
    n_test = _resolve_size(test_size, num_rows, "test_size")
    if n_dev + n_test >= num_rows:
        raise ValueError(f"dev_size + test_size = {n_dev + n_test} rows leaves no training rows out of {num_rows}")
    if group_column is None:
        units: list[list[int]] = [[i] for i in range(num_rows)]
    else:
        if group_column not in ds.column_names:
            raise ValueError(f"group_column {group_column!r} not in columns {ds.column_names}")
        by_group: dict[Any, list[int]] = {}
        for row_index, value in enumerate(ds[group_column]):
            key = json.dumps(value, sort_keys=True, default=str)  # lists/dicts become hashable, stably
            by_group.setdefault(key, []).append(row_index)
        units = list(by_group.values())
    random.Random(seed).shuffle(units)

    parts: dict[str, list[int]] = {"test": [], "dev": [], "train": []}
    targets = [("test", n_test), ("dev", n_dev)]
    remaining = iter(units)
    for name, target in targets:
        while len(parts[name]) < target:
            unit = next(remaining, None)
            if unit is None:
                raise ValueError(f"group-aware split ran out of groups filling {name!r} (groups too large)")
            parts[name].extend(unit)
    for unit in remaining:
        parts["train"].extend(unit)
    if not parts["train"]:
        raise ValueError(f"group-aware split left no training rows (groups in {group_column!r} are too large)")
    return DatasetDict({name: ds.select(sorted(parts[name])) for name in ("train", "dev", "test")})
