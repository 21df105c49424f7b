"""``make results-step-by-step``: the plan, the seed loop, resume, pooled McNemar tables; the paper-scale configs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "recipes" / "configs" / "step_by_step" / "plans" / "results_cpu.yaml"


@pytest.fixture(scope="module")
def driver():
    path = REPO / "recipes" / "results_step_by_step.py"
    spec = importlib.util.spec_from_file_location("_results_step_by_step", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_shipped_plan_parses_and_covers_every_table(driver, monkeypatch):
    monkeypatch.chdir(REPO)
    plan = driver.load_plan(str(PLAN))
    runs = driver.planned_runs(plan)
    names = [(r["namespace"], r["run"]) for r in runs]
    assert len(names) == len(set(names))  # the data-fraction block reuses the 100 % seed-0 SVAMP runs
    for task in ("svamp", "cqa"):
        full = [r for r in runs if r["namespace"] == task and r["train_fraction"] == 1.0]
        # 4 rows (gt/llm x standard/task_prefix) x 3 seeds
        assert {(r["label_source"], r["mode"], r["seed"]) for r in full} == {
            (s, m, seed) for s in ("gt", "llm") for m in ("standard", "task_prefix") for seed in (0, 1, 2)
        }
    fractions = {r["train_fraction"] for r in driver.select(runs, plan["tables"]["data_fraction"])}
    assert fractions == {0.125, 0.25, 0.5, 1.0}
    for spec in runs:  # every run's arguments parse with the recipe's own parser
        script_args, training_args = driver.run_args(plan, spec, {"train_source": "palm:svamp"} if
                                                      spec["namespace"] == "teacher_chain" else None)  # fmt: skip
        assert (script_args.mode, script_args.label_source, training_args.seed) == (
            spec["mode"], spec["label_source"], spec["seed"]
        )  # fmt: skip
        assert script_args.max_test_samples == 100 and script_args.max_train_samples is None
        assert training_args.output_dir.endswith(f"{spec['namespace']}/{spec['run']}")


def _fake_recipe(wins_by_seed: dict[int, int]):
    """A stand-in for recipes/step_by_step.py main: 10 test rows; task_prefix gets ``wins`` more rows right."""

    def main(script_args, training_args):
        out = Path(training_args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        right = 3 + (wins_by_seed[training_args.seed] if script_args.mode == "task_prefix" else 0)
        correct = [i < right for i in range(10)]
        (out / "predictions.jsonl").write_text(
            "".join(json.dumps({"id": f"r{i}", "prediction": "x", "correct": c}) + "\n" for i, c in enumerate(correct))
        )
        (out / "model.safetensors").write_bytes(b"weights")
        main.calls.append((script_args.mode, script_args.label_source, script_args.train_fraction, training_args.seed))
        return {
            "task": script_args.task, "student": "fake", "mode": script_args.mode,
            "test_accuracy": sum(correct) / 10, "seed": training_args.seed, "n_train": 7, "global_steps": 2,
            "train_tokens": 100, "train_tokens_per_s": 50.0, "train_wall_s": 2.0, "test_generation_s": 1.0,
            "teacher_test": {"teacher_accuracy_all": 0.5, "parse_rate": 1.0},
            "data_splits": {"test": "10 of 10 rows"}, "lineage": {},
        }  # fmt: skip

    main.calls = []
    return main


def _tiny_plan(tmp_path: Path) -> Path:
    plan = yaml.safe_load(PLAN.read_text())
    plan["results_dir"], plan["runs_dir"] = str(tmp_path / "results"), str(tmp_path / "runs")
    plan["namespaces"] = {"svamp": plan["namespaces"]["svamp"]}
    plan["namespaces"]["svamp"]["config"] = str(REPO / plan["namespaces"]["svamp"]["config"])
    plan["blocks"] = [
        {"namespace": "svamp", "label_sources": ["gt"], "modes": ["standard", "task_prefix"],
         "train_fractions": [1.0], "seeds": [0, 1, 2]},
        {"namespace": "svamp", "label_sources": ["gt"], "modes": ["standard", "task_prefix"],
         "train_fractions": [0.5, 1.0], "seeds": [0]},
    ]  # fmt: skip
    plan.pop("teacher")
    plan["tables"] = {"svamp": plan["tables"]["svamp"], "data_fraction": plan["tables"]["data_fraction"]}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_seed_loop_resume_and_pooled_mcnemar(driver, tmp_path, monkeypatch):
    fake = _fake_recipe({0: 2, 1: 3, 2: 1})
    monkeypatch.setattr(driver.compare.recipe, "main", fake)
    plan = _tiny_plan(tmp_path)
    driver.main(["--plan", str(plan)])
    # every seed of both modes once, and the data-fraction block only adds its 50 % runs (100 % seed 0 is reused)
    assert sorted(fake.calls) == sorted(
        [(m, "gt", 1.0, s) for m in ("standard", "task_prefix") for s in (0, 1, 2)]
        + [(m, "gt", 0.5, 0) for m in ("standard", "task_prefix")]
    )
    runs = tmp_path / "results" / "runs" / "svamp"
    assert len(list(runs.glob("*.json"))) == 8
    assert not list((tmp_path / "runs").rglob("*.safetensors"))  # weights dropped after each run

    table = json.loads((tmp_path / "results" / "svamp.json").read_text())
    step = next(r for r in table["summary"] if r["mode"] == "task_prefix")
    # seed by seed: 2, 3 and 1 rows only task_prefix gets right, none the other way -> pooled 6/0
    assert step["seeds"] == "0,1,2" and step["pooled wins/losses"] == "6/0"
    assert step["pooled McNemar p"] == pytest.approx(driver.compare.mcnemar_p(6, 0)) == pytest.approx(2 / 64)
    assert step["test_acc_mean"] == pytest.approx(0.5) and step["test_acc_std"] == pytest.approx(0.1)
    assert step["Δ vs standard"] == pytest.approx(0.2)
    base = next(r for r in table["summary"] if r["mode"] == "standard")
    assert base["pooled McNemar p"] is None and base["test_acc_std"] == 0.0
    curve = json.loads((tmp_path / "results" / "data_fraction.json").read_text())
    assert {(r["train_fraction"], r["mode"]) for r in curve["summary"]} == {
        (f, m) for f in (0.5, 1.0) for m in ("standard", "task_prefix")
    }
    assert (tmp_path / "results" / "data_fraction.png").is_file()
    assert "pooled McNemar p" in (tmp_path / "results" / "svamp.md").read_text()

    # a killed run resumes: finished runs are skipped; a lost result JSON is the only run redone
    (runs / "gt-task_prefix-f1-s2.json").unlink()
    fake.calls.clear()
    driver.main(["--plan", str(plan)])
    assert fake.calls == [("task_prefix", "gt", 1.0, 2)]


def test_pooled_mcnemar_refuses_different_test_rows(driver):
    run = {"run": "a", "seed": 0, "predictions": [{"id": "x", "correct": True}]}
    base = {"run": "b", "seed": 0, "predictions": [{"id": "y", "correct": True}]}
    with pytest.raises(ValueError, match="different test rows"):
        driver.pooled_mcnemar([run], [base])


@pytest.mark.parametrize("task", ["svamp", "cqa"])
@pytest.mark.parametrize("size", ["base", "large"])
def test_paper_scale_gpu_configs(task, size):
    """The paper's setting (T5-v1.1 student, full data, batch 64, lr 5e-5, 10k steps) parses with the recipe."""
    spec = importlib.util.spec_from_file_location("_sbs_recipe_cfg", REPO / "recipes" / "step_by_step.py")
    recipe = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = recipe
    spec.loader.exec_module(recipe)
    config = REPO / "recipes" / "configs" / "step_by_step" / f"{task}_t5_{size}_gpu.yaml"
    a, t = recipe.make_parser().parse_args_and_config(["--config", str(config)])
    assert a.model_name_or_path == f"google/t5-v1_1-{size}" and a.task == task
    assert a.max_train_samples is None and a.max_test_samples is None and a.train_fraction == 1.0
    assert (t.max_steps, t.per_device_train_batch_size, t.learning_rate) == (10000, 64, 5e-5)
    assert a.alpha == 0.5 and t.load_best_model_at_end and t.metric_for_best_model == "accuracy"


def test_a_failed_run_does_not_stop_the_grid(driver, tmp_path, monkeypatch):
    fake = _fake_recipe({0: 1, 1: 1, 2: 1})

    def flaky(script_args, training_args):
        if script_args.mode == "task_prefix" and training_args.seed == 1:
            raise RuntimeError("boom")
        return fake(script_args, training_args)

    monkeypatch.setattr(driver.compare.recipe, "main", flaky)
    with pytest.raises(SystemExit, match="1 runs failed.*svamp/gt-task_prefix-f1-s1"):
        driver.main(["--plan", str(_tiny_plan(tmp_path))])
    assert len(fake.calls) == 7  # every other run of the plan still ran
    table = json.loads((tmp_path / "results" / "svamp.json").read_text())
    step = next(r for r in table["summary"] if r["mode"] == "task_prefix")
    assert step["seeds"] == "0,2" and step["pooled wins/losses"] == "2/0"  # pooled over the seeds both modes have
