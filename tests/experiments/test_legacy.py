"""Re-scoring the pre-protocol step-by-step runs from their committed per-row results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import legacy


def _write_run(root: Path, mode: str, seed: int, correct: list[bool], steps: int = 16, ids=None) -> None:
    ids = ids or [f"svamp-test-{i}" for i in range(len(correct))]
    run = {
        "label_source": "gt",
        "mode": mode,
        "train_fraction": 1.0,
        "seed": seed,
        "global_steps": steps,
        "predictions": [{"id": i, "prediction": "x", "correct": c} for i, c in zip(ids, correct)],
    }
    path = root / "svamp_long" / f"gt-{mode}-f1-s{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))


def test_a_clear_gain_over_three_seeds_is_met_and_written(tmp_path):
    for seed in range(3):
        _write_run(tmp_path / "runs", "standard", seed, [i % 5 == 0 for i in range(100)])
        _write_run(tmp_path / "runs", "task_prefix", seed, [i % 5 != 4 for i in range(100)])
    rows = legacy.main(["--runs_dir", str(tmp_path / "runs"), "--out", str(tmp_path / "intervals")])
    (row,) = rows
    assert row["difference"] == pytest.approx(60.0) and row["ci_low"] > 0 and row["verdict"] == "met"
    assert row["per_seed_mcnemar"][0]["only_system"] == 60 and row["per_seed_mcnemar"][0]["p_value"] < 1e-6
    assert "+60.0 [" in (tmp_path / "intervals.md").read_text()
    assert json.loads((tmp_path / "intervals.json").read_text())["exploratory"] is True


def test_one_seed_is_never_met_and_different_rows_are_refused(tmp_path):
    _write_run(tmp_path / "a", "standard", 0, [False] * 50)
    _write_run(tmp_path / "a", "task_prefix", 0, [True] * 50)
    (row,) = legacy.compare_groups(legacy.load_runs(tmp_path / "a"), samples=200)
    assert row["ci_low"] > 0 and row["verdict"] == "not shown (fewer than 3 seeds)"

    _write_run(tmp_path / "b", "standard", 0, [False] * 50)
    _write_run(tmp_path / "b", "task_prefix", 0, [True] * 50, ids=[f"other-{i}" for i in range(50)])
    with pytest.raises(ValueError, match="different test rows"):
        legacy.compare_groups(legacy.load_runs(tmp_path / "b"), samples=200)
