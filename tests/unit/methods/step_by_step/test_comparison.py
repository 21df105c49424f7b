"""Paired comparison of runs: McNemar's exact test, discordant pairs by row id, pooling over seeds, the grid table."""

from __future__ import annotations

import json

import pytest

from toolkit.methods.step_by_step import comparison
from toolkit.publishing import reporting


def test_mcnemar_p():
    assert comparison.mcnemar_p(0, 0) == 1.0
    assert comparison.mcnemar_p(3, 3) == 1.0
    assert comparison.mcnemar_p(10, 0) == pytest.approx(2 / 2**10)
    assert comparison.mcnemar_p(8, 12) == pytest.approx(0.5034, abs=1e-4)


def _correct(mode: str, seed: int) -> list[bool]:
    """task_prefix wins rows 0-5 and loses row 9 under every seed; row 8 is right for both under seed 1 only."""
    correct = [mode == "task_prefix"] * 6 + [True, True, False, mode == "standard"]
    correct[8] = seed == 1
    return correct


def _write_grid(root) -> list[dict]:
    runs = []
    for mode in ("standard", "task_prefix"):
        for seed in (0, 1, 2):
            name = f"gt-{mode}-f1-s{seed}"
            correct = _correct(mode, seed)
            rows = ({"id": str(i), "correct": right} for i, right in enumerate(correct))
            reporting.write_jsonl(root / name / "predictions.jsonl", rows)
            runs.append(
                {
                    "run": name,
                    "mode": mode,
                    "label_source": "gt",
                    "train_fraction": 1.0,
                    "seed": seed,
                    "alpha": 0.5,
                    "test_accuracy": sum(correct) / 10,
                    "dev_accuracy": 0.5,
                    "n_train": 20,
                    "global_steps": 2,
                    "timings": {"train_s": 1.0, "test_generation_s": 0.5},
                    "train_tokens_per_s": 9.0,
                    "train_exclusions": {"kept_parse_failure": 0, "excluded_parse_failure": 1},
                    "teacher_test": {"n_parsed": 10, "teacher_accuracy_all": 0.7},
                    "predictions": [{"id": str(i), "correct": right} for i, right in enumerate(correct)],
                }
            )
    return runs


def test_seed_summary_pools_the_paired_rows_over_seeds(tmp_path):
    runs = _write_grid(tmp_path)
    summary = comparison.seed_summary(runs, str(tmp_path), "standard")
    step = next(row for row in summary if row["mode"] == "task_prefix")
    assert step["seeds"] == 3 and step["pooled wins/losses"] == "18/3"  # 6 wins and 1 loss per seed
    assert step["pooled McNemar p"] == pytest.approx(comparison.mcnemar_p(18, 3)) and step["pooled McNemar p"] < 0.01
    assert step["test_acc_mean"] == pytest.approx((0.8 + 0.9 + 0.8) / 3)
    assert step["test_acc_std"] == pytest.approx(0.0577, abs=1e-4)
    base = next(row for row in summary if row["mode"] == "standard")
    assert "pooled McNemar p" not in base
    standard = [r for r in runs if r["mode"] == "standard"]
    step_runs = [r for r in runs if r["mode"] == "task_prefix"]
    assert comparison.pooled_mcnemar(step_runs, standard) == (18, 3, comparison.mcnemar_p(18, 3))


def test_runs_on_different_test_rows_are_not_compared(tmp_path):
    runs = _write_grid(tmp_path)
    reporting.write_jsonl(tmp_path / runs[3]["run"] / "predictions.jsonl", [{"id": "other", "correct": True}])
    with pytest.raises(ValueError, match="different test rows"):
        comparison.discordant(runs[3], runs[0], str(tmp_path))


def test_write_comparison_tables_and_curve(tmp_path):
    runs = _write_grid(tmp_path)
    tables = comparison.write_comparison(str(tmp_path), runs, "standard", "curve")
    step = next(row for row in tables["rows"] if row["mode"] == "task_prefix" and row["seed"] == 0)
    assert step["wins/losses"] == "6/1" and step["Δ vs standard"] == pytest.approx(0.8 - 0.3)
    assert tables["rows"][-1] == {"mode": "teacher (few-shot CoT)", "test_acc": 0.7}
    for name in ("results.md", "summary.md", "comparison.json", "data_fraction_curve.png"):
        assert (tmp_path / name).is_file(), name
    assert [run["run"] for run in json.loads((tmp_path / "comparison.json").read_text())] == [r["run"] for r in runs]
    one_seed = [run for run in runs if run["seed"] == 0]
    (tmp_path / "summary.md").unlink()
    assert comparison.write_comparison(str(tmp_path), one_seed, "standard", "curve")["summary"] == []
    assert not (tmp_path / "summary.md").exists()  # one seed per run: nothing to pool
