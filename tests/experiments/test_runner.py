"""The experiment runner: runs every (run, seed) once, resumes after a kill, refuses uncommitted plans, writes
tables with intervals and the prediction copies; dev choices fill later runs' overrides."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from experiments import runner as runner_module
from experiments.plan import PlanError, load_plan
from experiments.runner import ProtocolError, Runner

FAKE = "tests.experiments.fake_recipe"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q")
    _git(path, "config", "user.email", "t@example.com")
    _git(path, "config", "user.name", "t")
    return path


def _plan(launcher: str = "inprocess", **extra) -> dict:
    plan = {
        "name": "fake_plan",
        "recipe": FAKE,
        "config": None,
        "budget": "seconds",
        "seeds": [0, 1, 2],
        "test_rows": 40,
        "primary_metric": "accuracy",
        "statistic": "seed_row_bootstrap",
        "launcher": launcher,
        "bootstrap_samples": 100,
        "choices": {
            "steps": {
                "run": "dev_curve",
                "series": "dev_curve",
                "x": "step",
                "y": "dev_loss",
                "rule": "plateau",
                "tolerance": 0.04,
            }
        },
        "runs": [
            {"name": "dev_curve", "seeds": [0], "overrides": {"quality": 0.5}},
            {"name": "strong", "overrides": {"quality": 0.9, "max_steps": "{choice:steps}"}},
            {"name": "weak", "overrides": {"quality": 0.3, "max_steps": "{choice:steps}"}},
            {"name": "reranker", "pending": "the recipe has no reranker yet"},
        ],
        "tables": [
            {
                "name": "fake_table",
                "title": "Fake",
                "rows": [
                    {"label": "strong", "run": "strong"},
                    {"label": "weak", "run": "weak"},
                    {"label": "reranker", "run": "reranker"},
                ],
                "comparisons": [
                    {"system": "strong", "baseline": "weak"},
                    {"system": "weak", "baseline": "strong"},
                    {"system": "strong", "baseline": "reranker"},
                    {"system": "strong", "baseline": "reranker", "threshold": -2.0},  # the same pair, listed once
                ],
            },
            {
                "name": "fake_passthrough",
                "kind": "metrics",
                "path": "table",
                "rows": [{"label": "s", "run": "strong"}],
            },
            {
                "name": "fake_curve",
                "kind": "series",
                "path": "dev_curve",
                "x": "step",
                "y": "dev_loss",
                "rows": [{"label": "dev", "run": "dev_curve"}],
            },
        ],
    }
    plan.update(extra)
    return plan


def _write(repo: Path, plan: dict, commit: bool = True) -> Path:
    path = repo / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    if commit:
        _git(repo, "add", "plan.yaml")
        _git(repo, "commit", "-q", "-m", "plan")
    return path


@pytest.fixture
def counted(monkeypatch) -> list:
    calls = []
    real = runner_module.invoke_recipe

    def invoke(recipe, argv, launcher, log_path, launch_args=()):
        calls.append(argv[argv.index("--output_dir") + 1])
        return real(recipe, argv, launcher, log_path, launch_args)

    monkeypatch.setattr(runner_module, "invoke_recipe", invoke)
    return calls


def _runner(path: Path, tmp_path: Path, exploratory: bool = False) -> Runner:
    return Runner(load_plan(path), tmp_path / "runs", tmp_path / "results", exploratory=exploratory)


def test_runs_each_seed_once_then_resumes_after_a_kill(repo, tmp_path, counted):
    path = _write(repo, _plan())
    outcome = _runner(path, tmp_path).run()
    assert len(counted) == 7 and outcome.pending == ["reranker"] and not outcome.failed
    assert {Path(p).relative_to(tmp_path / "runs").as_posix() for p in counted} == {
        "fake_plan/dev_curve/seed0",
        *[f"fake_plan/{run}/seed{s}" for run in ("strong", "weak") for s in (0, 1, 2)],
    }
    record = json.loads((tmp_path / "runs/fake_plan/strong/seed1/experiment.json").read_text())
    argv = record["argv"]
    assert argv[argv.index("--seed") + 1] == argv[argv.index("--data_seed") + 1] == "1"
    # dev loss 0.1, 0.05, 0.026, 0.0125: the first within 0.04 of the best is step 20
    assert argv[argv.index("--max_steps") + 1] == "20"
    head = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%H"], capture_output=True, text=True)
    assert record["plan_commit"] == head.stdout.strip() and record["exploratory"] is False

    # killed before the recipe finished: no metrics.json; everything else is skipped on the re-run
    (tmp_path / "runs/fake_plan/weak/seed2/metrics.json").unlink()
    counted.clear()
    outcome = _runner(path, tmp_path).run()
    assert [Path(p).relative_to(tmp_path / "runs").as_posix() for p in counted] == ["fake_plan/weak/seed2"]
    assert len(outcome.skipped) == 6
    assert list((tmp_path / "runs/fake_plan/weak").glob("seed2.stale-*"))  # the half run is set aside, not reused


def test_a_changed_run_is_not_finished(repo, tmp_path, counted):
    plan = _plan()
    path = _write(repo, plan)
    _runner(path, tmp_path).run(only=["dev_curve", "weak"])
    plan["runs"][2]["overrides"]["quality"] = 0.35
    _write(repo, plan)
    counted.clear()
    outcome = _runner(path, tmp_path).run(only=["dev_curve", "weak"])
    assert len(counted) == 3 and sorted(outcome.skipped) == ["dev_curve/seed0"]


def test_table_has_intervals_verdicts_plan_commit_and_prediction_copies(repo, tmp_path, counted):
    path = _write(repo, _plan())
    outcome = _runner(path, tmp_path).run()
    results = tmp_path / "results" / FAKE
    table = json.loads((results / "fake_table.json").read_text())
    assert (
        table["plan_commit"]
        == json.loads((tmp_path / "runs/fake_plan/weak/seed0/experiment.json").read_text())["plan_commit"]
    )
    assert table["exploratory"] is False and table["run_plan_commits"] == [table["plan_commit"]]
    assert table["dev_choices"] == {"steps": 20}
    rows = {row["label"]: row for row in table["rows"]}
    assert rows["strong"]["seeds"] == 3 and rows["strong"]["accuracy"] > rows["weak"]["accuracy"]
    assert rows["reranker"]["status"] == "pending"
    better, worse = table["comparisons"]
    assert better["accuracy"]["ci_low"] > 0 and better["accuracy"]["verdict"] == "met"
    assert worse["accuracy"]["ci_high"] < 0 and worse["accuracy"]["verdict"] == "not shown"
    assert table["missing"] == ["strong vs reranker"]
    markdown = outcome.tables["fake_table"].read_text()
    assert table["plan_commit"] in markdown and "95% interval" in markdown
    copy = results / "predictions" / "fake_plan" / "strong-seed2.jsonl.gz"
    with gzip.open(copy, "rt") as handle:
        copied = [json.loads(line) for line in handle]
    assert len(copied) == 40 and {row["seed"] for row in copied} == {2}
    record = json.loads((results / "runs" / "fake_plan" / "strong-seed2.json").read_text())
    assert record["experiment"]["seed"] == 2 and record["experiment"]["plan_commit"] == table["plan_commit"]
    assert "metrics" in record  # the recipe's own numbers travel with the committed copy
    passthrough = json.loads((results / "fake_passthrough.json").read_text())
    assert [(row["label"], row["seed"]) for row in passthrough["rows"]] == [("s", 0), ("s", 1), ("s", 2)]
    assert (results / "fake_curve.png").is_file()
    budget = json.loads((results / "fake_plan_budget.json").read_text())
    assert {row["status"] for row in budget["rows"]} == {"done", "pending"}
    assert budget["run_plan_commits"] == [table["plan_commit"]]


def test_committed_copies_stand_in_for_a_deleted_runs_directory(repo, tmp_path, counted):
    import shutil

    path = _write(repo, _plan())
    _runner(path, tmp_path).run()
    results = tmp_path / "results" / FAKE
    before = json.loads((results / "fake_table.json").read_text())
    curve_before = json.loads((results / "fake_curve.json").read_text())
    shutil.rmtree(tmp_path / "runs")  # a fresh clone: only what was committed under results/
    counted.clear()
    outcome = _runner(path, tmp_path).run()
    assert counted == [] and len(outcome.skipped) == 7  # nothing retrained; the dev choice read from the copy
    after = json.loads((results / "fake_table.json").read_text())
    assert after["rows"] == before["rows"] and after["comparisons"] == before["comparisons"]
    assert json.loads((results / "fake_curve.json").read_text())["rows"] == curve_before["rows"]

    # a run directory that exists but is unfinished wins over its older copy: that run is redone
    (tmp_path / "runs/fake_plan/weak/seed1").mkdir(parents=True)
    outcome = _runner(path, tmp_path).run()
    assert [Path(p).relative_to(tmp_path / "runs").as_posix() for p in counted] == ["fake_plan/weak/seed1"]


def test_uncommitted_or_changed_plan_is_refused(repo, tmp_path, counted):
    path = _write(repo, _plan(), commit=False)
    with pytest.raises(ProtocolError, match="committed unchanged"):
        _runner(path, tmp_path).run()
    _write(repo, _plan())
    path.write_text(path.read_text().replace("quality: 0.9", "quality: 0.95"))
    with pytest.raises(ProtocolError, match="committed unchanged"):
        _runner(path, tmp_path).run()
    assert counted == []


def test_exploratory_runs_mark_every_table(repo, tmp_path, counted):
    path = _write(repo, _plan(), commit=False)
    outcome = _runner(path, tmp_path, exploratory=True).run(only=["dev_curve", "strong"])
    assert len(counted) == 4
    for name, markdown in outcome.tables.items():
        assert "EXPLORATORY" in markdown.read_text(), name
        assert json.loads(markdown.with_suffix(".json").read_text())["exploratory"] is True


def test_dry_run_runs_nothing_and_writes_nothing(repo, tmp_path, counted):
    path = _write(repo, _plan(), commit=False)
    outcome = _runner(path, tmp_path).run(dry_run=True)
    assert counted == [] and outcome.ran == ["dev_curve/seed0"] and len(outcome.waiting) == 6
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def test_subprocess_launcher_runs_the_module(repo, tmp_path, counted):
    plan = _plan(launcher="python", seeds=[0])
    plan["runs"] = [{"name": "strong", "overrides": {"quality": 0.9}}]
    plan["choices"] = {}
    plan["tables"] = []
    path = _write(repo, plan)
    _runner(path, tmp_path).run()
    out = tmp_path / "runs/fake_plan/strong/seed0"
    assert len(counted) == 1 and (out / "metrics.json").is_file() and (out / "log.txt").is_file()


def test_bad_plans_name_the_file(tmp_path):
    plan = _plan()
    plan["runs"][1]["overrides"]["max_steps"] = "{choice:nope}"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(PlanError, match=r"bad\.yaml.*choice:nope"):
        load_plan(path)
    del plan["statistic"]
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(PlanError, match=r"bad\.yaml: missing \['statistic'\]"):
        load_plan(path)


def test_cli_refuses_an_uncommitted_plan(repo, tmp_path):
    path = _write(repo, _plan(), commit=False)
    with pytest.raises(SystemExit, match="committed unchanged"):
        runner_module.main([str(path), "--runs-root", str(tmp_path / "r"), "--results-root", str(tmp_path / "o")])


def test_a_plan_declared_exploratory_is_still_checked_and_marks_its_tables(repo, tmp_path, counted):
    plan = _plan(exploratory=True)
    plan["runs"] = plan["runs"][:2]
    plan["tables"] = [plan["tables"][1]]
    path = _write(repo, plan, commit=False)
    with pytest.raises(ProtocolError):
        _runner(path, tmp_path).run()
    _write(repo, plan)
    outcome = _runner(path, tmp_path).run()
    assert len(counted) == 4
    assert "EXPLORATORY" in outcome.tables["fake_passthrough"].read_text()


def test_killed_runner_resumes_at_the_unfinished_run(repo, tmp_path):
    """SIGKILL the runner while a run trains; the re-run starts exactly the runs without a finished record."""
    calls = tmp_path / "calls.txt"
    plan = _plan(launcher="python", seeds=[0, 1, 2], choices={}, tables=[])
    plan["runs"] = [{"name": "slow", "overrides": {"quality": 0.5, "sleep": 1.5, "calls_file": str(calls)}}]
    path = _write(repo, plan)
    runs = tmp_path / "runs" / "fake_plan" / "slow"
    command = [sys.executable, "-m", "experiments", str(path), "--runs-root", str(tmp_path / "runs")]
    command += ["--results-root", str(tmp_path / "results")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(command, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (runs / "seed0" / "experiment.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # the runner and the recipe it is running
    process.wait()
    finished = {record.parent.name for record in runs.glob("seed*/experiment.json")}
    assert "seed0" in finished and "seed2" not in finished
    started_before = len(calls.read_text().splitlines())

    subprocess.run(command, env=env, check=True)
    restarted = [Path(line).name for line in calls.read_text().splitlines()[started_before:]]
    assert sorted(restarted) == sorted({"seed0", "seed1", "seed2"} - finished)


def test_a_system_with_fewer_than_three_seeds_is_never_met(repo, tmp_path, counted):
    plan = _plan(seeds=[0, 1], choices={})
    plan["runs"] = [
        {"name": "strong", "overrides": {"quality": 0.95}},
        {"name": "weak", "overrides": {"quality": 0.1}},
    ]
    plan["tables"] = [plan["tables"][0]]
    plan["tables"][0]["rows"] = plan["tables"][0]["rows"][:2]
    plan["tables"][0]["comparisons"] = plan["tables"][0]["comparisons"][:1]
    _runner(_write(repo, plan), tmp_path).run()
    comparison = json.loads((tmp_path / "results" / FAKE / "fake_table.json").read_text())["comparisons"][0]
    assert comparison["accuracy"]["ci_low"] > 0  # the interval alone would say "met"
    assert comparison["accuracy"]["verdict"] == "not shown (fewer than 3 seeds)"


def test_a_dev_choice_that_cannot_be_made_fails_only_its_runs(repo, tmp_path, counted):
    plan = _plan()
    plan["choices"]["steps"]["series"] = "no_such_series"
    outcome = _runner(_write(repo, plan), tmp_path).run()
    assert sorted(outcome.failed) == sorted(f"{run}/seed{s}" for run in ("strong", "weak") for s in (0, 1, 2))
    assert len(counted) == 1  # the dev run itself ran
    table = json.loads((tmp_path / "results" / FAKE / "fake_table.json").read_text())
    assert table["dev_choices"]["steps"].startswith("not made:") and "no_such_series" in table["dev_choices"]["steps"]


def _long_plan(**table_rows) -> dict:
    """Two long-format runs; each table row selects one (model, task) of a run's file with `where:`."""
    rows = [
        {"label": label, "run": run, "where": {"model": model, "task": "snips"}, "field": "intent_prediction"}
        for label, (run, model) in table_rows.items()
    ]
    plan = _plan(choices={}, tables=[{"name": "snips", "rows": rows, "comparisons": []}])
    plan["runs"] = [
        {"name": "mt", "overrides": {"long_format": True, "quality": 0.9, "single_quality": 0.2}},
        {"name": "twin", "overrides": {"long_format": True, "quality": 0.6, "single_quality": 0.6}},
    ]
    return plan


def _snips_accuracy(results: Path, run: str, model: str) -> float:
    """Accuracy of one (model, snips) read straight from the copied predictions, mean over seeds."""
    scores = []
    for seed in (0, 1, 2):
        with gzip.open(results / "predictions" / "fake_plan" / f"{run}-seed{seed}.jsonl.gz", "rt") as handle:
            rows = [json.loads(line) for line in handle]
        mine = [row for row in rows if row["model"] == model and row["task"] == "snips"]
        scores.append(100 * sum(row["intent_prediction"] == row["gold"] for row in mine) / len(mine))
    return sum(scores) / len(scores)


def test_where_selects_two_systems_from_one_long_format_file(repo, tmp_path, counted):
    plan = _long_plan(
        multi=("mt", "multitask"),
        single=("mt", "single"),
        twin_multi=("twin", "multitask"),
        twin_single=("twin", "single"),
    )
    plan["tables"][0]["comparisons"] = [
        {"system": "multi", "baseline": "single"},
        {"system": "twin_multi", "baseline": "twin_single"},
        {"system": "single", "baseline": "multi", "threshold": -2.0},
    ]
    outcome = _runner(_write(repo, plan), tmp_path).run()
    results = tmp_path / "results" / FAKE
    table = json.loads((results / "snips.json").read_text())
    rows = {row["label"]: row for row in table["rows"]}
    assert {row["test_rows"] for row in rows.values()} == {40}  # one system's rows, not the file's 160
    expected = {
        "multi": _snips_accuracy(results, "mt", "multitask"),
        "single": _snips_accuracy(results, "mt", "single"),
    }
    assert rows["multi"]["accuracy"] == pytest.approx(expected["multi"])
    assert rows["single"]["accuracy"] == pytest.approx(expected["single"])
    better, twins, within = table["comparisons"]
    assert better["accuracy"]["difference"] == pytest.approx(expected["multi"] - expected["single"])
    assert better["accuracy"]["verdict"] == "met"
    # equal answers on every test id: paired by id (the single model's rows are written in reverse order), every
    # bootstrap resample differs by exactly 0; paired by position they would not
    assert twins["accuracy"]["ci_low"] == twins["accuracy"]["ci_high"] == twins["accuracy"]["difference"] == 0
    assert within["threshold"] == -2.0 and within["accuracy"]["verdict"] == "not shown"
    markdown = outcome.tables["snips"].read_text()
    assert markdown.count("| -2.00 |") == 1 and "claim: difference above" in markdown  # which claim the verdict is on


def test_where_naming_an_unknown_field_names_the_plan_file(repo, tmp_path, counted):
    plan = _long_plan(multi=("mt", "multitask"))
    plan["tables"][0]["rows"][0]["where"] = {"modle": "multitask"}
    with pytest.raises(PlanError, match=r"plan\.yaml: run 'mt' seed 0: where names \['modle'\]"):
        _runner(_write(repo, plan), tmp_path).run()
    plan["tables"][0]["rows"][0]["where"] = {"model": "multitask", "task": "snipz"}
    with pytest.raises(PlanError, match=r"plan\.yaml: .*keeps no prediction row; values present: .*'snips'"):
        _runner(_write(repo, plan), tmp_path).run()
    del plan["tables"][0]["rows"][0]["where"]  # the whole long file: ids repeat across models and tasks
    with pytest.raises(PlanError, match=r"plan\.yaml: table 'snips' row 'multi': .*repeats row ids"):
        _runner(_write(repo, plan), tmp_path).run()


@pytest.mark.parametrize("where", ["multitask", {}, {"model": ["multitask", "single"]}])
def test_where_that_is_not_a_mapping_of_values_is_refused(tmp_path, where):
    plan = _long_plan(multi=("mt", "multitask"))
    plan["tables"][0]["rows"][0]["where"] = where
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(PlanError, match=r"bad\.yaml: table 'snips' row 'multi': where"):
        load_plan(path)
