"""Every shipped plan loads, and every run's command line parses with its recipe's own parser."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from statistics import mean

import pytest
import yaml

from experiments.plan import choices_used, load_plan
from experiments.runner import Runner, recipe_module
from experiments.tables import budget_table_name, lookup
from recipes import step_by_step
from toolkit.methods.lmcor.config import LMCorConfig
from toolkit.methods.lmcor.data import eval_candidates, load_splits
from toolkit.methods.step_by_step.config import StepByStepConfig
from toolkit.methods.step_by_step.data import prepare_data
from toolkit.models.loading import load_tokenizer

REPO = Path(__file__).resolve().parents[2]
PLANS = sorted((REPO / "experiments" / "plans").glob("*.yaml"))


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.stem)
def test_plan_runs_parse_with_their_recipe(path, tmp_path, monkeypatch):
    import importlib

    monkeypatch.chdir(REPO)
    plan = load_plan(path)
    assert plan.recipe in path.stem  # experiments/plans/<recipe>*.yaml
    runner = Runner(plan, tmp_path / "runs", tmp_path / "results")
    runnable = [spec for spec in plan.runs if not spec.pending]
    assert runnable, f"{path.name} plans no runnable run"
    for spec in runnable:
        chosen = {name: 7 for name in choices_used(spec)}  # a stand-in for the value chosen on dev
        module = importlib.import_module(recipe_module(spec.recipe))
        for seed in spec.seeds:
            parsed = module.make_parser().parse_args_and_config(runner.argv(spec, seed, chosen))
            values = {key: value for section in parsed for key, value in vars(section).items()}
            assert values["output_dir"] == str(runner.run_dir(spec.name, seed))
            if "--seed" in (plan.seed_args if spec.seed_args is None else spec.seed_args):
                assert values["seed"] == seed


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.stem)
def test_series_and_metrics_tables_find_their_rows_in_the_committed_runs(path, tmp_path, monkeypatch):
    """A table reading a path of the recipe's metrics.json renders empty when the path is wrong: check it on every
    committed run, so a wrong path fails here instead of in a finished plan's table."""
    monkeypatch.chdir(REPO)
    plan = load_plan(path)
    runner = Runner(plan, tmp_path / "runs", REPO / "results")  # no run directories: the committed copies answer
    for table in plan.tables:
        if table.get("kind") not in ("series", "metrics"):
            continue
        for row in table["rows"]:
            metrics_path = row.get("path", table.get("path", ""))
            for seed in plan.run(row["run"]).seeds:
                metrics = runner.metrics(row["run"], seed)
                if metrics is None:  # not run yet
                    continue
                assert lookup(metrics, metrics_path), (
                    f"{path.name}: table {table['name']} finds nothing at {metrics_path!r} in {row['run']} seed {seed}"
                )


def test_no_two_plans_of_a_recipe_write_the_same_table_file():
    """Plans of one recipe share results/<recipe>/: a table name used twice makes one plan overwrite the other's table
    (an exploratory and a pre-registered table must stay side by side)."""
    writers: dict[tuple[str, str], str] = {}
    for path in PLANS:
        plan = load_plan(path)
        names = [table["name"] for table in plan.tables] + [budget_table_name(plan.name)]
        for name in names:
            key = (plan.recipe, name)
            assert key not in writers, f"{path.name} and {writers.get(key)} both write results/{plan.recipe}/{name}.md"
            writers[key] = path.name


def test_the_deen_plan_follows_the_protocol(monkeypatch):
    """Step count chosen on dev, three seeds of the corrector, >= 300 test rows, every baseline in the table."""
    monkeypatch.chdir(REPO)
    plan = load_plan(REPO / "experiments" / "plans" / "lmcor_wmt22_deen.yaml")
    assert len(plan.run("k4").seeds) >= 3 and plan.test_rows >= 300
    assert plan.overrides["test_size"] == plan.test_rows
    choice = plan.choices[choices_used(plan.run("k4"))[0]]
    dev_run = plan.run(choice.run)
    assert dev_run.overrides["eval_strategy"] == "steps"  # the curve is dev loss, never a test score
    for name in ("k1", "no_candidates"):
        assert choices_used(plan.run(name)) == choices_used(plan.run("k4"))
    labels = " ".join(row["label"] for row in plan.tables[0]["rows"])
    for baseline in ("best single system", "MBR", "reranker", "k = 1", "no-candidates"):
        assert baseline in labels


def test_the_deen_reranker_is_the_corrector_run_trained_to_pick(monkeypatch):
    """Same student, seeds, rows, k and dev-chosen steps as the k = 4 corrector; only the mode differs."""
    monkeypatch.chdir(REPO)
    plan = load_plan(REPO / "experiments" / "plans" / "lmcor_wmt22_deen.yaml")
    reranker, corrector = plan.run("reranker"), plan.run("k4")
    assert not reranker.pending and reranker.overrides["mode"] == "reranker"
    assert reranker.seeds == corrector.seeds and reranker.config == corrector.config
    assert {key: value for key, value in reranker.overrides.items() if key != "mode"} == corrector.overrides


@pytest.mark.parametrize("pair", ["zhen", "csen"])
def test_the_other_pairs_choose_their_steps_on_their_own_dev_curve(pair, monkeypatch):
    monkeypatch.chdir(REPO)
    plan = load_plan(REPO / "experiments" / "plans" / f"lmcor_wmt22_{pair}.yaml")
    deen = load_plan(REPO / "experiments" / "plans" / "lmcor_wmt22_deen.yaml")
    assert plan.choices["steps"] == deen.choices["steps"]  # the same rule, read from the pair's own dev run
    assert plan.run("dev_curve").overrides["eval_strategy"] == "steps"
    for name in ("k4", "reranker"):
        assert choices_used(plan.run(name)) == ["steps"] and not plan.run(name).optional
    assert plan.run("reranker").overrides["mode"] == "reranker"
    assert plan.test_rows == plan.overrides["test_size"] >= 300
    config = yaml.safe_load((REPO / plan.config).read_text())
    deen_config = yaml.safe_load((REPO / deen.config).read_text())
    assert config["task"] == f"wmt22_{pair}" and config["test_systems"] == deen_config["test_systems"]


@pytest.mark.parametrize("pair", ["zhen", "csen"])
def test_the_other_pairs_data_gives_300_test_rows_with_4_unseen_candidates(pair, data_root, monkeypatch):
    monkeypatch.chdir(REPO)
    plan = load_plan(REPO / "experiments" / "plans" / f"lmcor_wmt22_{pair}.yaml")
    fields = {field.name for field in dataclasses.fields(LMCorConfig)}
    values = {**yaml.safe_load((REPO / plan.config).read_text()), **plan.overrides}
    config = LMCorConfig(**{key: value for key, value in values.items() if key in fields}, data_dir=str(data_root))
    splits = load_splits(config)
    assert len(splits["test"]) >= plan.test_rows and len(splits["dev"]) >= 100
    assert all(len(candidates) == 4 for candidates in eval_candidates(splits["test"], config))


SVAMP_PLAN = REPO / "experiments" / "plans" / "step_by_step_svamp.yaml"
STEP_MATCHED_RUNS = ("standard", "step_by_step")


def test_the_svamp_plan_chooses_its_steps_on_the_standard_arms_dev_accuracy(monkeypatch):
    """The choice reads the dev curve the recipe writes; both arms run the chosen steps over 3 seeds."""
    monkeypatch.chdir(REPO)
    plan = load_plan(SVAMP_PLAN)
    choice = plan.choices["steps"]
    dev_run = plan.run(choice.run)
    assert dev_run.overrides["mode"] == "standard" and dev_run.overrides["eval_strategy"] == "steps"
    assert choice.series == "dev_curve" and choice.y in step_by_step.DEV_CURVE_METRICS and choice.higher_is_better
    standard, step = plan.run("standard"), plan.run("step_by_step")
    assert (standard.overrides["mode"], step.overrides["mode"]) == ("standard", "task_prefix")
    assert {key: value for key, value in step.overrides.items() if key != "mode"} == {"max_steps": "{choice:steps}"}
    assert standard.seeds == step.seeds and len(step.seeds) >= 3
    assert plan.overrides["max_test_samples"] == "None" and plan.overrides["label_source"] == "gt"


def test_the_svamp_compute_matched_arm_trains_step_by_steps_tokens(tmp_path, monkeypatch):
    """Its step count is step-by-step's training tokens over standard's tokens per step, both the mean over the
    committed step-matched runs (training compute, never a test score)."""
    monkeypatch.chdir(REPO)
    plan = load_plan(SVAMP_PLAN)
    runner = Runner(plan, tmp_path / "runs", REPO / "results")  # the committed copies answer
    step_matched = {name: [runner.metrics(name, seed) for seed in plan.run(name).seeds] for name in STEP_MATCHED_RUNS}
    assert all(metrics is not None for runs in step_matched.values() for metrics in runs)
    step_by_step_tokens = mean(metrics["train_tokens"] for metrics in step_matched["step_by_step"])
    standard_tokens_per_step = mean(
        metrics["train_tokens"] / metrics["global_steps"] for metrics in step_matched["standard"]
    )
    compute_matched = plan.run("standard_compute_matched")
    assert not compute_matched.pending and compute_matched.seeds == plan.run("standard").seeds
    expected_steps = round(step_by_step_tokens / standard_tokens_per_step)
    assert compute_matched.overrides == {"mode": "standard", "max_steps": expected_steps}


def _svamp_plan_config(plan, data_root: Path, mode: str) -> StepByStepConfig:
    """The plan's step-by-step config for ``mode``: the base YAML, the plan's overrides, ``"None"`` as no cap."""
    values = {**yaml.safe_load((REPO / plan.config).read_text()), **plan.overrides, "mode": mode}
    fields = {field.name for field in dataclasses.fields(StepByStepConfig)}
    values = {key: None if value == "None" else value for key, value in values.items() if key in fields}
    return StepByStepConfig(**values, data_dir=str(data_root))


@pytest.mark.slow
def test_the_svamp_plan_tests_every_row_and_cuts_at_most_1pct_of_rationales(data_root, monkeypatch):
    """All of the PaLM test split; the length caps cut <= 1% of rationales, no gold label, no test gold's answer."""
    monkeypatch.chdir(REPO)
    plan = load_plan(SVAMP_PLAN)
    student = yaml.safe_load((REPO / plan.config).read_text())["model_name_or_path"]  # local:smollm2-135m
    tokenizer = load_tokenizer(student, padding_side="right")

    def tokens(text: str) -> int:
        return len(tokenizer(str(text), add_special_tokens=False)["input_ids"])

    config = _svamp_plan_config(plan, data_root, "task_prefix")
    data = prepare_data(config)
    assert len(data["test_rows"]) == plan.test_rows == 200  # the whole PaLM SVAMP test split
    rationales_cut = [tokens(e["rationale"]) + 1 > config.max_rationale_length for e in data["examples"]]
    assert sum(rationales_cut) <= 0.01 * len(rationales_cut)
    standard = prepare_data(_svamp_plan_config(plan, data_root, "standard"))["examples"]
    assert max(tokens(e["label"]) + 1 for e in standard) <= config.max_label_length
    assert max(tokens(row["gold"]) for row in data["test_rows"]) <= config.max_new_tokens


def test_the_multitask_fp32_plan_compares_like_with_like(monkeypatch):
    """fp32 everywhere, single-task models on the multi-task model's task rows, fixed test rows, steps chosen on dev,
    and every `where:` names a (model, task) the recipe writes for the config's tasks."""
    from types import SimpleNamespace

    from toolkit.methods.multitask.data import parse_task_spec
    from toolkit.training.budget import model_parts

    monkeypatch.chdir(REPO)
    plan = load_plan(REPO / "experiments" / "plans" / "qlora_multitask_fp32.yaml")
    assert plan.overrides["quantization"] is False and plan.overrides["baseline_budget"] == "match_task_rows"
    assert plan.overrides["split_seed"] == 42 and plan.overrides["test_size"] == plan.test_rows
    assert plan.overrides["dev_curve_rows"] > 0  # every run carves the same dev rows: the training pools match
    assert len(plan.run("fp32").seeds) >= 3 and choices_used(plan.run("fp32")) == ["steps"]
    dev_run = plan.run(plan.choices["steps"].run)
    assert dev_run.overrides["eval_strategy"] == "steps" and plan.choices["steps"].y == "eval_loss"

    config = yaml.safe_load((REPO / plan.config).read_text())
    splits = [
        SimpleNamespace(name=f"{source}:{task}", task=task) for source, task in map(parse_task_spec, config["tasks"])
    ]
    written = {("multitask", entry.name) for entry in splits}
    written |= {(f"single:{name}", name) for name, _, _ in model_parts(splits)}
    comparisons = [table for table in plan.tables if table.get("kind", "comparison") == "comparison"]
    assert len(comparisons) == 4
    for table in comparisons:
        for row in table["rows"]:
            assert row["run"] == "fp32" and (row["where"]["model"], row["where"]["task"]) in written, row
