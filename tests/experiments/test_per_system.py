"""The corrector against each test system, from committed predictions and the systems' outputs in the data."""

from __future__ import annotations

import gzip
import json

import pytest
import yaml

from experiments import per_system
from tests.unit.methods.lmcor.samples import synthetic_pool


def _write_plan_and_predictions(root, rows, corrector_outputs):
    (root / "base.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "jsonl",
                "task_type": "mt",
                "pool_path": "unused",
                "k": 4,
                "train_systems": ["X"],
                "test_systems": ["A", "B", "C", "D"],
            }
        )
    )
    plan = {
        "name": "fake_lmcor",
        "recipe": "lmcor",
        "config": "base.yaml",
        "budget": "none",
        "seeds": [0, 1, 2],
        "test_rows": len(rows),
        "primary_metric": "chrf",
        "statistic": "seed_row_bootstrap",
        "bootstrap_samples": 200,
        "runs": [{"name": "k4"}],
        "tables": [{"name": "t", "rows": [{"label": "k4", "run": "k4"}]}],
    }
    (root / "plan.yaml").write_text(yaml.safe_dump(plan))
    folder = root / "results" / "lmcor" / "predictions" / "fake_lmcor"
    folder.mkdir(parents=True)
    for seed in (0, 1, 2):
        with gzip.open(folder / f"k4-seed{seed}.jsonl.gz", "wt") as handle:
            for row, output in zip(reversed(rows), reversed(corrector_outputs)):  # order differs from the data's
                handle.write(json.dumps({"id": row["id"], "prediction": output, "references": row["references"]}))
                handle.write("\n")


def test_the_corrector_that_copies_a_system_ties_it_and_beats_a_worse_one(tmp_path, monkeypatch):
    rows = synthetic_pool(30, seed=3)
    copies_of_d = [row["candidates"][3] for row in rows]  # system D's output on every row
    _write_plan_and_predictions(tmp_path, rows, copies_of_d)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(per_system, "load_splits", lambda config: {"test": rows})
    table = per_system.main(["plan.yaml"])
    by_pair = {(row["baseline"], row["metric"]): row for row in table["comparisons"]}
    assert table["seeds"] == [0, 1, 2] and table["rows"] == 30 and len(by_pair) == 8
    assert by_pair[("system D", "chrf")]["difference"] == pytest.approx(0.0)
    assert by_pair[("system D", "chrf")]["verdict"] == "not shown"
    worst = min(("A", "B", "C"), key=lambda name: by_pair[(f"system {name}", "chrf")]["baseline_score"])
    assert by_pair[(f"system {worst}", "chrf")]["ci_low"] > 0
    assert "system D" in (tmp_path / "results" / "lmcor" / "fake_lmcor_per_system.md").read_text()


def test_rows_that_differ_from_the_data_are_refused(tmp_path, monkeypatch):
    rows = synthetic_pool(10, seed=1)
    _write_plan_and_predictions(tmp_path, rows, [row["candidates"][0] for row in rows])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(per_system, "load_splits", lambda config: {"test": rows[:9]})
    with pytest.raises(ValueError, match="not the runs' rows"):
        per_system.main(["plan.yaml"])
