"""toolkit.methods.multitask.report: headline rows carry strict + snapped accuracy and compute; totals compare compute."""

from __future__ import annotations

import pytest

from toolkit.methods.multitask import report


def test_rows_carry_compute_and_totals_compare_to_multitask():
    """Every row says what it cost; the summary shows the baselines' multiple of it."""
    multitask_info = {"train_steps": 20, "train_tokens": 4000, "train_cpu_seconds": 10.0, "train_seconds": 6.0}
    intent = {"train_steps": 20, "train_tokens": 1500, "train_cpu_seconds": 7.0, "train_seconds": 4.0}
    slots = {"train_steps": 20, "train_tokens": 1600, "train_cpu_seconds": 8.0, "train_seconds": 4.5}
    pair = report.compute_of(intent, slots)
    assert pair == {"train_steps": 40, "train_tokens": 3100, "train_cpu_seconds": 15.0, "train_seconds": 8.5}
    row = report.headline_row("single x2", {"snips:intent_slots": {"intent_accuracy": 0.5, "slot_f1": 0.4}}, pair)
    assert row["train steps"] == 40 and row["train tokens"] == 3100 and row["train CPU-s"] == 15.0
    totals = report.compute_totals(
        [{"approach": "multi-task", "models": 1} | multitask_info, {"approach": "single", "models": 2} | pair],
        "multi-task",
    )
    assert totals[0]["CPU-s × multi-task"] == 1.0 and totals[1]["CPU-s × multi-task"] == pytest.approx(1.5)
    md = report.render_results([row], totals, [], {"snips:intent_slots": "700 rows of snips:test (official)"}, "x")
    assert "train CPU-s" in md and "CPU-s × multi-task" in md and "snips:test (official)" in md


def test_tables_fill_summary_in_the_order_results_drivers_read():
    """Tables.finish stores compute / table / validity in metrics (the recipe moves them into the run record's tables)."""
    tables, summary = report.Tables(), {}
    multitask = {"train_steps": 10, "train_tokens": 100, "train_cpu_seconds": 4.0, "train_seconds": 2.0}
    single = {"train_steps": 10, "train_tokens": 60, "train_cpu_seconds": 6.0, "train_seconds": 3.0}
    results = {"snips:intent": {"intent_accuracy": 0.5, "intent_invalid": 2, "macro_f1": 0.4, "n": 4}}
    tables.add_model("multitask", "multi-task", results, multitask, approach="multi-task")
    tables.add_model("single:snips:intent", "single", results, single, single, approach="single (all)")
    md = tables.finish(summary, {"snips:intent": "4 rows"}, "match_task_rows")
    assert [r["model"] for r in summary["table"]] == ["multi-task", "single"]
    assert [v["model"] for v in summary["validity"]] == ["multitask", "single:snips:intent"]
    assert summary["validity"][0]["invalid labels"] == 2
    assert summary["compute"][1]["models"] == 2 and summary["compute"][1]["CPU-s × multi-task"] == 3.0
    assert "baseline_budget=match_task_rows" in md


def test_tables_extend_appends_every_kind_of_row_in_order():
    results = {"snips:intent": {"intent_accuracy": 0.5, "n": 4}}
    compute = {"train_steps": 1, "train_tokens": 1, "train_cpu_seconds": 1.0, "train_seconds": 1.0}
    first, second = report.Tables(), report.Tables()
    first.add_model("multitask", "multi-task", results, compute, approach="multi-task")
    second.add_model("encoder", "encoder", results, compute, approach="encoder")
    first.extend(second)
    assert [r["model"] for r in first.table] == ["multi-task", "encoder"]
    assert [r["model"] for r in first.validity] == ["multitask", "encoder"]
    assert [r["approach"] for r in first.totals] == ["multi-task", "encoder"]
    assert len(second.table) == 1  # the appended tables are left as they were
