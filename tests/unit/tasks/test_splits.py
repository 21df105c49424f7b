"""toolkit.tasks.splits: the deterministic, group-aware train/dev/test split."""

from __future__ import annotations

import pytest

from toolkit.tasks.splits import deterministic_split


def _toy(num_rows=100):
    from datasets import Dataset

    return Dataset.from_dict({"x": list(range(num_rows)), "g": [i // 4 for i in range(num_rows)]})


def test_deterministic_split_is_stable_and_disjoint():
    ds = _toy()
    first = deterministic_split(ds, dev_size=10, test_size=0.2, seed=1)
    again = deterministic_split(ds, dev_size=10, test_size=0.2, seed=1)
    other_seed = deterministic_split(ds, dev_size=10, test_size=0.2, seed=2)
    assert {k: len(v) for k, v in first.items()} == {"train": 70, "dev": 10, "test": 20}
    assert all(first[k]["x"] == again[k]["x"] for k in first)
    assert first["test"]["x"] != other_seed["test"]["x"]
    seen = [x for k in first for x in first[k]["x"]]
    assert sorted(seen) == list(range(100))
    assert first["train"]["x"] == sorted(first["train"]["x"])  # original order kept within first split


def test_deterministic_split_group_integrity():
    ds = _toy()
    parts = deterministic_split(ds, dev_size=10, test_size=10, seed=3, group_column="g")
    owner = {}
    for name, split in parts.items():
        for group in split["g"]:
            assert owner.setdefault(group, name) == name, f"group {group} straddles splits"
    # groups have 4 rows: targets are reached, overshooting by less than one group
    assert 10 <= len(parts["dev"]) < 14 and 10 <= len(parts["test"]) < 14


def test_deterministic_split_rejects_bad_sizes():
    ds = _toy(10)
    with pytest.raises(ValueError, match="no training rows"):
        deterministic_split(ds, dev_size=5, test_size=5)
    with pytest.raises(ValueError, match="group_column"):
        deterministic_split(ds, dev_size=1, test_size=1, group_column="nope")
    with pytest.raises(ValueError):
        deterministic_split(ds, dev_size=1.5, test_size=1)
