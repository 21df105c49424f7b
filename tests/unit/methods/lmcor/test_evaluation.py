"""Evaluation: every method on the same rows through one scoring path, the learning-curve callback, the card."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.unit.methods.lmcor.samples import mt_rows, synthetic_pool
from toolkit.methods.lmcor import evaluation
from toolkit.methods.lmcor.config import LMCorConfig
from toolkit.methods.lmcor.data import load_pool
from toolkit.methods.lmcor.evaluation import (
    CORRECTOR,
    NO_CANDIDATES,
    RERANKER,
    corrector_scores,
    evaluate_run,
    results_markdown,
)

SYSTEMS = ["S1", "U1", "U2"]


def _jfleg_run(data_root):
    rows = load_pool("jfleg", data_dir=str(data_root))
    assert len(rows) == 754
    config = LMCorConfig(task="jfleg", data_dir=str(data_root), k=2)
    pool = [{**r, "candidates": [r["references"][1], r["source"]]} for r in rows]
    return config, pool, [r["source"] for r in rows]


def test_recipe_scoring_path_source_copy_is_official_jfleg_gleu(data_root):
    """JFLEG dev, source copy: 38.20 GLEU (official gleu.py) through the recipe's scoring, hypotheses PTB-tokenised
    as for every row of the table; evaluate_run's source-copy row is scored by that same path."""
    config, pool, sources = _jfleg_run(data_root)
    assert config.eval_tokenize == "ptb"  # auto: JFLEG references are PTB-tokenised
    scores, sigs = corrector_scores(config, pool, sources)
    assert scores["gleu"] == pytest.approx(38.20, abs=0.01)
    assert "refs:sampled-500" in sigs["gleu"] and sigs["gleu"].endswith("hyp:ptb")
    part = pool[:40]
    results = evaluate_run(config, part, sources[:40], sources[:40], dev_rows=pool[40:50])
    expected = corrector_scores(config, part, sources[:40])[0]
    assert results["scores"]["source copy"] == pytest.approx(expected)
    assert results["scores"][CORRECTOR] == pytest.approx(expected)
    assert results["signatures"]["gleu"] == sigs["gleu"]


@pytest.mark.slow
def test_recipe_evaluate_run_full_jfleg_dev_source_copy(data_root):
    config, pool, sources = _jfleg_run(data_root)
    results = evaluate_run(config, pool, sources, sources, dev_rows=pool[:20])
    assert results["scores"]["source copy"]["gleu"] == pytest.approx(38.20, abs=0.01)


def test_evaluate_run_best_single_system_from_dev_and_oracles_bound_it():
    rows = synthetic_pool(30, seed=5)
    dev, test = rows[:10], rows[10:]
    config = LMCorConfig(
        task="jsonl", task_type="mt", pool_path="unused", k=4, train_systems=["X"], test_systems=["A", "B", "C", "D"]
    )
    preds = [r["candidates"][0] for r in test]
    res = evaluate_run(config, test, preds, preds, dev_rows=dev)
    single = [n for n in res["scores"] if n.startswith("best single system")]
    assert single == [f"best single system ({res['best_single_system']}, chosen on dev)"]
    assert set(res["per_system_dev"]) == {"A", "B", "C", "D"}
    # each test system's own output is a row, and travels in every prediction record, for per-system comparisons
    for name in "ABCD":
        outputs = [record[f"baseline:system {name}"] for record in res["predictions"]]
        assert outputs == [dict(zip(r["systems"], r["candidates"]))[name] for r in test]
    best = res["best_single_system"]
    assert res["scores"][f"system {best}"] == res["scores"][single[0]]
    for metric, label in (("bleu", "BLEU"), ("chrf", "chrF")):
        oracle = res["scores"][f"oracle selection (corpus {label} search)"][metric]
        assert oracle >= res["scores"][single[0]][metric] - 1e-9
    assert [r["method"] for r in res["table"]][-1] == "LMCor corrector"
    no_dev = evaluate_run(config, test, preds, preds)
    assert no_dev["best_single_system"] is None and not any(n.startswith("best single") for n in no_dev["scores"])


def test_no_candidates_row_is_labelled_and_baselines_still_use_the_candidates():
    rows = mt_rows(SYSTEMS, 6)
    config = LMCorConfig(
        task="jsonl",
        task_type="mt",
        pool_path="x",
        train_systems=["S1"],
        test_systems=["U1", "U2"],
        k=2,
        no_candidates=True,
    )
    res = evaluate_run(config, rows, ["x"] * 6, [r["references"][0] for r in rows], dev_rows=rows[:3])
    methods = [r["method"] for r in res["table"]]
    assert methods[-1] == NO_CANDIDATES and CORRECTOR not in methods and res["model_row"] == NO_CANDIDATES
    assert res["corrector"] == res["scores"][NO_CANDIDATES] and res["corrector"]["chrf"] == pytest.approx(100.0)
    assert res["best_single_system"] in ("U1", "U2")


def test_reranker_row_is_a_selection_among_each_rows_candidates():
    rows = mt_rows(SYSTEMS, 4)
    config = LMCorConfig(
        task="jsonl",
        task_type="mt",
        pool_path="x",
        train_systems=["S1"],
        test_systems=["U1", "U2"],
        k=2,
        mode="reranker",
    )
    generated = ["U2 out 0", "U1  out 1", "U2 out", "something else 3"]
    res = evaluate_run(config, rows, ["in"] * 4, generated, dev_rows=rows[:2])
    assert res["model_row"] == RERANKER and [r["method"] for r in res["table"]][-1] == RERANKER
    predictions = [record["prediction"] for record in res["predictions"]]
    assert predictions[:2] == ["U2 out 0", "U1 out 1"]
    assert all(record["prediction"] in record["candidates"] for record in res["predictions"])
    assert [record["generated"] for record in res["predictions"]] == generated
    assert res["reranker"]["exact"] == 2 and res["reranker"]["mapped_by_chrf"] == 2
    assert res["scores"][RERANKER] == corrector_scores(config, rows, predictions)[0]
    res["training"] = {"test_rows": 4}
    assert "2 / 4 generations were not exactly a candidate" in results_markdown(res)


def test_prediction_records_list_the_test_candidates_so_the_copy_rate_is_exact():
    from experiments.metrics import get_metric

    rows = mt_rows(SYSTEMS, 4)
    config = LMCorConfig(
        task="jsonl", task_type="mt", pool_path="x", train_systems=["S1"], test_systems=["U1", "U2"], k=2
    )
    # copied: row 0 (U2, a candidate no selector is bound to pick) and row 1; rewritten: rows 2 and 3
    predictions = ["U2 out 0", "U1 out 1", "rewritten 2", "rewritten 3"]
    res = evaluate_run(config, rows, ["in"] * 4, predictions)
    assert [record["candidates"] for record in res["predictions"]] == [
        [f"U1 out {i}", f"U2 out {i}"] for i in range(4)
    ]
    assert get_metric("copy_rate")(res["predictions"]) == pytest.approx(50.0)
    assert "generated" not in res["predictions"][0] and "reranker" not in res


def test_learning_curve_scores_the_test_rows_at_its_steps_only(monkeypatch):
    rows = mt_rows(SYSTEMS, 4)
    calls = []

    def fake_generate(model, tokenizer, inputs, **kwargs):
        calls.append((list(inputs), kwargs))
        return [row["references"][0] for row in rows]

    monkeypatch.setattr(evaluation, "generate", fake_generate)
    config = LMCorConfig(task="jsonl", task_type="mt", pool_path="x")
    inputs = [f"input {i}" for i in range(4)]
    assert evaluation.learning_curve_callbacks([], config, None, rows, inputs, {}) == []
    (callback,) = evaluation.learning_curve_callbacks([2], config, None, rows, inputs, {"max_new_tokens": 3})
    for step in (1, 2, 3):
        callback.on_step_end(None, SimpleNamespace(global_step=step), None, model=object())
    assert calls == [(inputs, {"max_new_tokens": 3})]  # one process: the whole test set, in order
    assert [entry["step"] for entry in callback.history] == [2]
    assert callback.history[0]["chrf"] == pytest.approx(100.0)
