"""toolkit.methods.llmembed.comparison: every row of a results table is scored on the same test rows; costs add up."""

from __future__ import annotations

import time

import pytest

from toolkit.meter import Cost, Meter
from toolkit.methods.llmembed.comparison import MethodResult, build_tables, render_tables, score_row

NAMES = ["neg", "pos"]
# 10 test rows; the head is right on rows 0-3 and 8-9 only, the prompt right on all of its first 4 rows.
GOLD = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]


def _results():
    head = MethodResult("llmembed", [0, 1, 0, 1, 1, 0, 1, 0, 0, 1], Cost(5.0, 8.0), Cost(1.0, 2.0), 100, 10, 20)
    enc = MethodResult("finetuned_encoder", [0] * 10, Cost(9.0, 9.0), Cost(2.0, 4.0), 100, 5, 5)
    prompt = MethodResult("few_shot_prompt", [0, 1, -1, 1], Cost(), Cost(4.0, 8.0), 2, 0, 50)
    return [head, enc, prompt]


def test_each_table_scores_one_set_of_rows():
    tables = build_tables(_results(), GOLD, NAMES, watts_per_core=10.0)
    assert set(tables) == {"all", "subset"}
    full, sub = tables["all"], tables["subset"]
    # The prompted method scored 4 rows: it is not put next to methods scored on 10.
    assert [r["method"] for r in full["rows"]] == ["llmembed", "finetuned_encoder"]
    assert {r["n_test"] for r in full["rows"]} == {10} and full["n_rows"] == 10
    # Every method is also scored on exactly the prompted rows.
    assert [r["method"] for r in sub["rows"]] == ["llmembed", "finetuned_encoder", "few_shot_prompt"]
    assert {r["n_test"] for r in sub["rows"]} == {4} and sub["n_rows"] == 4
    assert "first 4 of the 10" in sub["title"] and "few_shot_prompt" in sub["title"]
    acc = {r["method"]: r["accuracy"] for r in sub["rows"]}
    assert acc == {"llmembed": 1.0, "finetuned_encoder": 0.5, "few_shot_prompt": 0.75}  # invalid counts as wrong
    assert {r["method"]: r["accuracy"] for r in full["rows"]}["llmembed"] == 0.6
    assert next(r for r in sub["rows"] if r["method"] == "few_shot_prompt")["invalid"] == 1


def test_subset_keeps_rates_not_totals():
    sub = build_tables(_results(), GOLD, NAMES)["subset"]
    head = next(r for r in sub["rows"] if r["method"] == "llmembed")
    # 2 CPU-s for 10 rows is 200 ms per example whatever subset it is scored on.
    assert head["infer_cpu_ms_per_ex"] == pytest.approx(200.0) and head["infer_ms_per_ex"] == pytest.approx(100.0)
    for row in sub["rows"]:
        assert not {"infer_s", "cpu_s", "energy_wh"} & set(row)
    assert not {"infer_s", "cpu_s", "energy_wh"} & set(sub["columns"])


def test_one_table_when_every_method_scores_every_row():
    results = _results()
    results[2] = MethodResult("few_shot_prompt", [0, 1] * 5, Cost(), Cost(4.0, 8.0), 2, 0, 50)
    tables = build_tables(results, GOLD, NAMES)
    assert list(tables) == ["all"] and len(tables["all"]["rows"]) == 3
    row = score_row(results[0], GOLD, NAMES, watts_per_core=10.0)
    assert row["cpu_s"] == 10.0 and row["energy_wh"] == pytest.approx(10.0 * 10 / 3600)


def test_render_says_which_rows():
    text = render_tables(build_tables(_results(), GOLD, NAMES), "Splits: x.")
    assert text.startswith("Splits: x.")
    assert "### All 10 test rows" in text and "### Prompting subset: every method on the first 4" in text
    with pytest.raises(ValueError):
        build_tables([MethodResult("x", [0] * 11, Cost(), Cost(), 1)], GOLD, NAMES)


def test_cost_energy():
    cost = Cost(10.0, 36.0) + Cost(1.0, 0.0)
    assert cost.wall_s == 11.0 and cost.energy_wh(10.0) == pytest.approx(0.1)
    with Meter() as meter:
        time.sleep(0.2)
    # Waiting is wall time, not CPU time.
    assert meter.cost.wall_s >= 0.2 and meter.cost.cpu_s < 0.1
