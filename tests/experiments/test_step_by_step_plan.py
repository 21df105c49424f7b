"""The step-by-step plan: it covers every table, and the runner's seed loop, resume and seed-level comparison
work on it (the recipe replaced by a fake that writes what the recipe writes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from experiments import runner as runner_module
from experiments.plan import load_plan
from experiments.runner import Runner
from recipes import step_by_step

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "experiments" / "plans" / "step_by_step.yaml"


def test_shipped_plan_covers_every_table(monkeypatch):
    monkeypatch.chdir(REPO)
    plan = load_plan(PLAN)
    for task in ("svamp", "cqa"):
        runs = [spec for spec in plan.runs if spec.name.startswith(f"{task}_") and "_f0" not in spec.name]
        full = {(spec.overrides["label_source"], spec.overrides["mode"], seed) for spec in runs for seed in spec.seeds}
        assert {(s, m, seed) for s in ("gt", "llm") for m in ("standard", "task_prefix") for seed in (0, 1, 2)} <= full
    fraction_table = next(table for table in plan.tables if table["name"] == "data_fraction")
    fractions = {plan.run(row["run"]).overrides.get("train_fraction", 1.0) for row in fraction_table["rows"]}
    assert fractions == {0.125, 0.25, 0.5, 1.0}
    teacher = plan.run("teacher_chain")
    assert "{run_dir:teacher_rationales}" in teacher.overrides["train_source"]


def _fake_invoke(wins_by_seed: dict[int, int], fail: tuple[str, int] | None = None):
    """A stand-in for running recipes/step_by_step.py: 10 test rows; task_prefix gets ``wins`` more rows right."""
    calls = []

    def invoke(recipe, argv, launcher, log_path, launch_args=()):
        script_args, training_args = step_by_step.make_parser().parse_args_and_config(argv)
        calls.append((script_args.mode, training_args.seed))
        if fail == (script_args.mode, training_args.seed):
            raise RuntimeError("boom")
        right = 3 + (wins_by_seed[training_args.seed] if script_args.mode == "task_prefix" else 0)
        out = Path(training_args.output_dir)
        rows = [{"id": f"r{i}", "prediction": "x", "correct": i < right} for i in range(10)]
        (out / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (out / "metrics.json").write_text(json.dumps({"test_accuracy": right / 10, "seed": training_args.seed}))
        return 1.0, 1.0

    invoke.calls = calls
    return invoke


def _tiny_plan(tmp_path: Path) -> Path:
    plan = yaml.safe_load(PLAN.read_text())
    plan["config"] = str(REPO / plan["config"])
    plan["test_rows"] = 10
    plan["bootstrap_samples"] = 200
    plan["runs"] = [run for run in plan["runs"] if run["name"] in ("svamp_gt_standard", "svamp_gt_step_by_step")]
    plan["tables"] = [table for table in plan["tables"] if table["name"] == "svamp"]
    plan["tables"][0]["rows"] = plan["tables"][0]["rows"][:2]
    plan["tables"][0]["comparisons"] = plan["tables"][0]["comparisons"][:1]
    repo = tmp_path / "repo"
    repo.mkdir()
    path = repo / "step_by_step.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "p"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    return path


def test_seed_loop_resume_and_seed_level_comparison(tmp_path, monkeypatch):
    fake = _fake_invoke({0: 2, 1: 3, 2: 1})
    monkeypatch.setattr(runner_module, "invoke_recipe", fake)
    path = _tiny_plan(tmp_path)
    Runner(load_plan(path), tmp_path / "runs", tmp_path / "results").run()
    assert sorted(fake.calls) == sorted((mode, seed) for mode in ("standard", "task_prefix") for seed in (0, 1, 2))

    table = json.loads((tmp_path / "results" / "step_by_step" / "svamp.json").read_text())
    rows = {row["label"]: row for row in table["rows"]}
    step = rows["gold labels / step-by-step"]
    assert step["seeds"] == 3 and step["accuracy"] == pytest.approx(50.0) and step["accuracy sd"] == pytest.approx(10)
    comparison = table["comparisons"][0]["accuracy"]
    assert comparison["difference"] == pytest.approx(20.0) and comparison["seeds"] == 3
    assert comparison["ci_low"] <= 20.0 <= comparison["ci_high"]

    # a killed run resumes: finished runs are skipped; a lost metrics.json is the only run redone
    (tmp_path / "runs" / "step_by_step" / "svamp_gt_step_by_step" / "seed2" / "metrics.json").unlink()
    fake.calls.clear()
    Runner(load_plan(path), tmp_path / "runs", tmp_path / "results").run()
    assert fake.calls == [("task_prefix", 2)]


def test_a_failed_run_does_not_stop_the_plan(tmp_path, monkeypatch):
    fake = _fake_invoke({0: 1, 1: 1, 2: 1}, fail=("task_prefix", 1))
    monkeypatch.setattr(runner_module, "invoke_recipe", fake)
    outcome = Runner(load_plan(_tiny_plan(tmp_path)), tmp_path / "runs", tmp_path / "results").run()
    assert outcome.failed == ["svamp_gt_step_by_step/seed1"] and len(fake.calls) == 6
    table = json.loads((tmp_path / "results" / "step_by_step" / "svamp.json").read_text())
    step = next(row for row in table["rows"] if row["label"] == "gold labels / step-by-step")
    assert step["seeds"] == 2  # the table covers the seeds that finished
