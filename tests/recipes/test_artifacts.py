"""Every recipe ends in ``toolkit.run.finish_run``: the same artifact set, with real content, in each run dir.

One tiny end-to-end run per recipe (tiny Llama / T5 / BERT built from config); what is checked is the contract a
user (and ``report.html``) relies on, not a file list: the metrics parse and hold numbers, the results table is a
table, there is one prediction row per scored test row, the saved config names its sections, and the card and the
report carry the results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.recipes import test_llmembed as llmembed_t
from tests.recipes import test_lmcor as lmcor_t
from tests.recipes import test_qlora_multitask as mt_t
from tests.recipes import test_step_by_step as sbs_t
from tests.recipes.test_llmembed import toy_data  # noqa: F401 - the fixture
from toolkit.run import ARTIFACTS


def _run_lmcor(tmp_path, models, _toy):
    recipe = lmcor_t._recipe()
    pool = lmcor_t._write_pool(tmp_path / "pool.jsonl")
    argv = lmcor_t._common(tmp_path / "run", pool, models["t5"], "--lora", "false", "--separator", " <extra_id_0> ")
    recipe.main(*recipe.make_parser().parse_args_and_config(argv))


def _run_step_by_step(tmp_path, models, _toy):
    recipe = sbs_t._load("step_by_step")
    train, test = sbs_t._write_data(tmp_path)
    argv = sbs_t._args(models["t5"], train, test, tmp_path / "run", "--mode", "task_prefix")
    recipe.main(*recipe.make_parser().parse_args_and_config(argv))


def _run_multitask(tmp_path, models, _toy):
    recipe = mt_t._recipe()
    topic, slots = mt_t._write_tasks(tmp_path)
    argv = mt_t._common(tmp_path, models["llama"], topic, slots) + ["--quantization", "false", "--baselines", "none"]
    recipe.main(*mt_t._parse(recipe, argv))


def _run_llmembed(tmp_path, models, toy):
    recipe = llmembed_t._recipe()
    argv = llmembed_t._args(toy, tmp_path / "run", tmp_path / "cache", models["llama"], models["bert"])
    argv += ["--epochs", "3", "--run_few_shot", "false", "--run_encoder_baseline", "false"]
    recipe.main(*recipe.make_parser().parse_args_and_config(argv))


RECIPES = {"lmcor": _run_lmcor, "step_by_step": _run_step_by_step, "qlora_multitask": _run_multitask}
RECIPES["llmembed"] = _run_llmembed


def _numbers(obj) -> int:
    if isinstance(obj, bool):
        return 0
    if isinstance(obj, (int, float)):
        return 1
    if isinstance(obj, dict):
        return sum(_numbers(v) for v in obj.values())
    return sum(_numbers(v) for v in obj) if isinstance(obj, list) else 0


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_writes_the_same_artifact_set(
    name,
    tiny_t5_dir,
    tiny_llama_dir,
    tiny_bert_dir,
    toy_data,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    if name == "qlora_multitask":
        pytest.importorskip("peft")
    models = {"t5": tiny_t5_dir, "llama": tiny_llama_dir, "bert": tiny_bert_dir}
    RECIPES[name](tmp_path, models, toy_data)
    run = Path(tmp_path / "run")

    assert {a for a in ARTIFACTS if (run / a).is_file()} == set(ARTIFACTS)
    record = json.loads((run / "metrics.json").read_text())
    assert _numbers(record) > 0
    results = (run / "results.md").read_text()
    assert "| --- |" in results  # a markdown table
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert predictions and all(isinstance(p, dict) and p for p in predictions)
    # The run record: the same four fields, named the same way, in every recipe.
    assert record["predictions"]["path"] == "predictions.jsonl" and record["predictions"]["rows"] == len(predictions)
    columns = record["predictions"].get("columns", {})
    assert all(column in predictions[0] for role, column in columns.items() if role not in ("facts", "source"))
    assert all(key.endswith("_s") for key in record["timings"]) and "total_s" in record["timings"]
    assert {"wall_s", "cpu_s", "peak_rss_mb", "energy_wh"} <= set(record["compute"])
    assert record["tables"]["results"] and all(isinstance(row, dict) for row in record["tables"]["results"])
    config = json.loads((run / "run_config.json").read_text())
    assert len(config) >= 1 and all(isinstance(v, dict) for v in config.values())
    card = (run / "README.md").read_text()
    assert card.startswith("---\n") and results.strip().splitlines()[-1] in card
    assert (run / "training_curves.png").stat().st_size > 1000
    assert "<table" in (run / "report.html").read_text()
