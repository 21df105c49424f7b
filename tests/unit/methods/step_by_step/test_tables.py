"""A plan's results tables: per (labels, mode) the mean ± std over seeds and the pooled McNemar test vs standard."""

from __future__ import annotations

import pytest

from toolkit.methods.step_by_step import tables


def _run(mode: str, seed: int, right: int) -> dict:
    correct = [i < right for i in range(10)]
    return {
        "run": f"gt-{mode}-f1-s{seed}",
        "label_source": "gt",
        "mode": mode,
        "train_fraction": 1.0,
        "seed": seed,
        "n_train": 7,
        "global_steps": 2,
        "train_tokens": 100,
        "test_accuracy": right / 10,
        "train_tokens_per_s": 50.0,
        "run_cpu_s": 3.0,
        "predictions": [{"id": f"r{i}", "correct": value} for i, value in enumerate(correct)],
    }


def test_summarize_pools_seeds_and_compares_with_standard():
    runs = [_run("standard", seed, 3) for seed in (0, 1)] + [
        _run("task_prefix", seed, 3 + seed + 1) for seed in (0, 1)
    ]
    runs.append(_run("task_prefix", 2, 9))  # no standard run with seed 2: left out of the paired comparison
    summary = tables.summarize(runs, ("label_source", "mode"))
    step = next(row for row in summary if row["mode"] == "task_prefix")
    assert step["seeds"] == "0,1,2" and step["pooled wins/losses"] == "3/0"
    assert step["Δ vs standard"] == pytest.approx((0.4 + 0.5) / 2 - 0.3)
    assert step["test_acc_mean"] == pytest.approx((0.4 + 0.5 + 0.9) / 3)
    standard = next(row for row in summary if row["mode"] == "standard")
    assert standard["Δ vs standard"] is None and standard["test_acc_std"] == 0.0


def test_select_keeps_the_runs_matching_every_key():
    runs = [_run("standard", 0, 3), _run("task_prefix", 0, 4)]
    assert tables.select(runs, {"mode": "task_prefix", "seed": 0}) == [runs[1]]
    assert tables.select(runs, {"mode": "task_prefix", "seed": 1}) == []
