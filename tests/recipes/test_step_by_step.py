"""End to end: recipes/step_by_step.py and recipes/compare_step_by_step.py on tiny T5 / tiny Llama students.

The data is a small rationale dataset in the format ``data_gen/rationales.py`` writes (input columns + rationale,
teacher_label, parse_ok, lineage columns), so the saved-dataset path is exercised; the ``palm:`` source is
covered by a test that runs on the real data when it is present.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from recipes import compare_step_by_step, step_by_step
from toolkit.methods.step_by_step import comparison, prediction
from toolkit.methods.step_by_step.contamination import ContaminationError
from toolkit.publishing import reporting

REPO = Path(__file__).resolve().parents[2]
PAIRS = [
    ("A man plays a guitar on stage.", "A person makes music.", 0, "Playing a guitar makes music."),
    ("A dog runs in the park.", "A cat sleeps on a sofa.", 2, "A dog is not a cat."),
    ("Two kids eat lunch.", "The kids are brothers.", 1, "Kids eating may not be related."),
    ("A woman reads a book.", "Someone is reading.", 0, "A woman reading is someone reading."),
]


def _load(name: str):
    """The recipe module ``recipes.<name>`` (the resume, artifact and tensorboard tests drive it too)."""
    return importlib.import_module(f"recipes.{name}")


def _nli_row(premise, hypothesis, label):
    return {"input": f"Premise: {premise}\nHypothesis: {hypothesis}", "label": label}


def _write_data(tmp_path: Path) -> tuple[Path, Path]:
    """Train (24 rows, rationales, one parse failure), plus dev.jsonl and test.jsonl with inputs of their own."""
    names = ["entailment", "neutral", "contradiction"]
    train = []
    for i in range(24):
        premise, hypothesis, label, rationale = PAIRS[i % len(PAIRS)]
        failed = i == 5  # one teacher parse failure: dropped where it has no target, kept for gold standard
        teacher = names[(label + 1) % 3] if i % 6 == 1 else names[label]  # the teacher is sometimes wrong
        train.append(
            {
                "premise": premise,
                "hypothesis": hypothesis,
                **_nli_row(premise, hypothesis, label),
                "rationale": None if failed else rationale,
                "teacher_label": None if failed else teacher,
                "parse_ok": not failed,
                "teacher_completion": "...",
                "teacher_id": "openai:tiny-teacher@127.0.0.1",
                "template_hash": "tmpl-1234",
                "sampling": json.dumps({"temperature": 0.0}),
                "usage": "{}",
            }
        )
    held_out = {
        "dev": [_nli_row(f"Yesterday: {p}", h, y) for p, h, y, _ in PAIRS],
        "test": [_nli_row(f"Today: {p}", h, y) for p, h, y, _ in PAIRS],
    }
    files = {"train.jsonl": train, "test.jsonl": held_out["test"], "dev.jsonl": held_out["dev"]}
    for name, rows in files.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "train.jsonl", tmp_path / "test.jsonl"


def _args(model_dir, train, test, out, *extra):
    flags = {
        "task": "anli1",
        "model_name_or_path": model_dir,
        "train_source": train,
        "test_source": test,
        "dev_size": 4,
        "output_dir": out,
        "max_steps": 4,
        "per_device_train_batch_size": 4,
        "learning_rate": 3e-3,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_steps": 2,
        "save_strategy": "steps",
        "save_steps": 2,
        "load_best_model_at_end": "true",
        "metric_for_best_model": "accuracy",
        "report_to": "none",
        "max_input_length": 96,
        "max_label_length": 8,
        "max_rationale_length": 24,
        "max_new_tokens": 6,
        "seed": 0,
    }
    return [item for name, value in flags.items() for item in (f"--{name}", str(value))] + list(extra)


def type_name(arch: str) -> str:
    return "T5ForConditionalGeneration" if arch == "t5" else "LlamaForCausalLM"


def _weights(model_dir):
    return load_file(str(Path(model_dir) / "model.safetensors"))


@pytest.mark.parametrize(
    "arch, mode, labels",
    [
        ("t5", "task_prefix", "llm"),
        ("t5", "standard", "gt"),
        ("llama", "task_prefix", "gt"),
        ("llama", "standard", "llm"),
    ],
)
def test_recipe_end_to_end(arch, mode, labels, tiny_t5_dir, tiny_llama_dir, tmp_path, monkeypatch):
    model_dir = tiny_t5_dir if arch == "t5" else tiny_llama_dir
    train, test = _write_data(tmp_path)
    out = tmp_path / "run"
    prompts_prefix = []  # the label-task prefix every prediction was made with (validation and test)
    generate = prediction.generate_predictions

    def recording_generate(*args, **kwargs):
        prompts_prefix.append(kwargs["prefix"])
        return generate(*args, **kwargs)

    monkeypatch.setattr(prediction, "generate_predictions", recording_generate)
    # The official-file flags win over the *_source a config names (here: the PaLM test split).
    official = ["--dev_path", str(tmp_path / "dev.jsonl"), "--test_source", "palm:anli1", "--test_path", str(test)]
    args = _args(model_dir, train, test, out, "--mode", mode, "--label_source", labels, *official)
    metrics = step_by_step.main(*step_by_step.make_parser().parse_args_and_config(args))

    artifacts = ["model.safetensors", "metrics.json", "results.md", "predictions.jsonl", "training_curves.png"]
    artifacts += ["task_losses.png", "run_config.json", "README.md", "report.html", "checkpoint-2", "checkpoint-4"]
    for name in artifacts:
        assert (out / name).exists(), name
    # Training happened: loss logged (with the per-task losses) and the weights moved.
    logs = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    train_logs = [entry for entry in logs if "loss" in entry]
    assert len(train_logs) == 4 and all("label_loss" in entry for entry in train_logs)
    assert all(("rationale_loss" in entry) == (mode == "task_prefix") for entry in train_logs)
    assert [entry["step"] for entry in logs if "eval_accuracy" in entry] == [2, 4]  # selection on validation
    before, after = _weights(model_dir), _weights(out)
    assert any(not (before[k] == after[k]).all() for k in before)
    # The standard student is trained and queried on the bare input, the step-by-step one with predict:.
    expected_prefix = "" if mode == "standard" else "predict: "
    assert metrics["label_prefix"] == expected_prefix and prompts_prefix and set(prompts_prefix) == {expected_prefix}
    # The parse failure is a valid gold-label row for standard training, dropped where it has no target.
    gold_standard = (mode, labels) == ("standard", "gt")
    exclusions = metrics["train_exclusions"]
    assert exclusions["n_rows"] == 24 and exclusions["n_parse_failures"] == 1
    assert exclusions["kept_parse_failure"] == int(gold_standard)
    assert exclusions["excluded_parse_failure"] == int(not gold_standard)
    assert metrics["n_train"] == (24 if gold_standard else 23)
    assert metrics["parse_failures_by_mode"]["standard/gt"] == {"kept": 1, "dropped": 0}
    assert metrics["parse_failures_by_mode"]["task_prefix/gt"] == {"kept": 0, "dropped": 1}
    assert metrics["teacher_train"]["n_parse_failures"] == 1 and metrics["teacher_train"]["parse_rate"] == 23 / 24
    # The teacher is wrong on rows 1, 7, 13, 19 (row 5 failed to parse): accuracy over the 23 parsed rows.
    assert metrics["teacher_train"]["teacher_accuracy_parsed"] == pytest.approx(19 / 23)
    # Validation and test come from the given files; no carve (all 24 rows stay in the train pool).
    assert (
        metrics["teacher_train"]["n"] == 24 and metrics["n_dev"] == 4 and "carved" not in metrics["data_splits"]["dev"]
    )
    assert metrics["data_splits"]["test"] == f"4 of 4 rows of {test} [test]"
    assert metrics["train_test_overlap"] == 0 and metrics["test_contamination"]["problems"] == []
    assert metrics["n_test"] == 4 and metrics["global_steps"] == 4
    # Tokens come from the trainer's own counter, both task batches included.
    assert metrics["train_tokens"] == max(entry.get("num_input_tokens_seen", 0) for entry in logs)
    assert metrics["distributed"] == {"distributed_type": "NO", "num_processes": 1, "wrapper": type_name(arch)}
    # The reported accuracy is the one the predictions file supports.
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4 and metrics["test_accuracy"] == sum(p["correct"] for p in preds) / 4
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"] and saved["mode"] == mode
    card = (out / "README.md").read_text()
    assert "openai:tiny-teacher@127.0.0.1" in card and "tmpl-1234" in card and "parse_rate" in card


def test_dev_evaluations_are_written_as_the_dev_curve(tiny_llama_dir, tmp_path):
    """Every dev evaluation (label loss, greedy accuracy on the dev rows) is a point of metrics.json's dev_curve."""
    train, test = _write_data(tmp_path)
    out = tmp_path / "run"
    dev = ["--dev_path", str(tmp_path / "dev.jsonl"), "--load_best_model_at_end", "false", "--save_strategy", "no"]
    args = _args(tiny_llama_dir, train, test, out, "--mode", "standard", "--label_source", "gt", *dev)
    step_by_step.main(*step_by_step.make_parser().parse_args_and_config(args))

    curve = json.loads((out / "metrics.json").read_text())["dev_curve"]
    assert [point["step"] for point in curve] == [2, 4]  # eval_steps 2 of 4 steps
    assert all(set(point) == {"step", "eval_loss", "eval_accuracy"} for point in curve)
    assert all(point["eval_loss"] > 0 and 0.0 <= point["eval_accuracy"] <= 1.0 for point in curve)
    assert curve[0]["eval_loss"] != curve[1]["eval_loss"]  # the dev loss moves as the student trains


def test_test_split_rationales_are_refused(tiny_t5_dir, tmp_path):
    """Rationales generated from the test split (or rows sharing test inputs) never train the student."""
    train, test = _write_data(tmp_path)
    job = tmp_path / "rationales-of-test"  # laid out like a data_gen/rationales.py output of the test split
    job.mkdir()
    (job / "data.jsonl").write_text(train.read_text())
    (job / "config.json").write_text(json.dumps({"job": {"dataset": "my_nli", "split": "test"}}))
    out = tmp_path / "run"
    for source, test_file in ((job / "data.jsonl", test), (train, train)):  # provenance; shared inputs
        args = _args(tiny_t5_dir, source, test_file, out, "--mode", "task_prefix")
        with pytest.raises(ContaminationError, match="allow_test_contamination"):
            step_by_step.main(*step_by_step.make_parser().parse_args_and_config(args))
    assert not (out / "model.safetensors").exists()  # refused before any training
    override = ["--allow_test_contamination", "true", "--eval_strategy", "no", "--load_best_model_at_end", "false"]
    args = _args(tiny_t5_dir, job / "data.jsonl", train, out, "--mode", "standard", "--max_steps", "1", *override)
    metrics = step_by_step.main(*step_by_step.make_parser().parse_args_and_config(args))
    report = metrics["test_contamination"]
    assert report["allowed"] and report["train_generated_from"] == "test" and report["n_test_inputs_seen"] == 24
    assert metrics["dev_curve"] == []  # no dev evaluation during training: an empty curve


def test_official_file_flags_override_a_config():
    """--test_path / --dev_path replace a config's PaLM sources; the carve only happens without them."""
    config = str(REPO / "recipes" / "configs" / "step_by_step" / "svamp.yaml")
    parsed, _ = step_by_step.make_parser().parse_args_and_config(["--config", config])
    assert parsed.test_source == "palm:svamp" and parsed.eval_source is None and parsed.label_prefix is None
    parsed, _ = step_by_step.make_parser().parse_args_and_config(
        ["--config", config, "--test_path", "svamp_test.jsonl", "--dev_path", "svamp_dev.jsonl"]
    )
    assert parsed.test_source == "svamp_test.jsonl" and parsed.eval_source == "svamp_dev.jsonl"


def test_recipe_pushes_to_fake_hub(fake_hub, tiny_t5_dir, tmp_path):
    train, test = _write_data(tmp_path)
    out = tmp_path / "run"
    hub = ["--push_to_hub", "--hub_model_id", "fake-user/sbs-student", "--hub_token", fake_hub.token]
    args = _args(tiny_t5_dir, train, test, out, "--mode", "task_prefix", "--max_steps", "2", *hub)
    metrics = step_by_step.main(*step_by_step.make_parser().parse_args_and_config(args))
    files = fake_hub.files("fake-user/sbs-student")
    assert {"README.md", "model.safetensors", "metrics.json", "results.md"} <= set(files)
    assert not any(name.startswith("checkpoint-") for name in files)
    assert metrics["hub_url"].startswith(fake_hub.url)
    assert fake_hub.token not in (out / "run_config.json").read_text()


def test_compare_command(tiny_t5_dir, tmp_path, capsys):
    train, test = _write_data(tmp_path)
    out = tmp_path / "cmp"
    grid = ["--train_fractions", "0.5", "1.0", "--label_sources", "gt"]
    args = _args(tiny_t5_dir, train, test, out, "--max_steps", "2", "--eval_steps", "2", *grid)
    runs = compare_step_by_step.main(*compare_step_by_step.make_parser().parse_args_and_config(args))
    assert [r["run"] for r in runs] == [
        "gt-standard-f0.5",
        "gt-task_prefix-f0.5",
        "gt-standard-f1",
        "gt-task_prefix-f1",
    ]
    # Same data and steps for both modes at each fraction; the smaller fraction trains on fewer rows.
    assert runs[0]["n_train"] == runs[1]["n_train"] < runs[2]["n_train"] == runs[3]["n_train"]
    assert all(r["global_steps"] == 2 for r in runs)
    for name in ("results.md", "comparison.json", "data_fraction_curve.png", "report.html"):
        assert (out / name).exists()
    table = (out / "results.md").read_text()
    assert table.count("task_prefix") == 2 and "Δ vs standard" in table
    assert "Δ vs standard" in capsys.readouterr().out and "McNemar p" in table
    assert "parse-fail kept/dropped" in table and not (out / "summary.md").exists()  # one seed: no pooled summary
    assert all("carved" in r["data_splits"]["dev"] for r in runs)  # no validation file given: carved from train


def _fake_run(args, targs):
    """Stands in for recipes/step_by_step.py main: writes per-row predictions whose correctness depends on the
    mode and the seed, so the pooled counts are known: task_prefix wins rows 0-5 and loses row 9 under every seed."""
    correct = [args.mode == "task_prefix"] * 6 + [True, True, False, args.mode == "standard"]
    correct[8] = targs.seed == 1  # both modes get row 8 right under seed 1 only: concordant, never counted
    reporting.write_jsonl(
        Path(targs.output_dir, "predictions.jsonl"), ({"id": str(i), "correct": c} for i, c in enumerate(correct))
    )
    metrics = {
        "task": args.task,
        "mode": args.mode,
        "label_source": args.label_source,
        "alpha": args.alpha,
        "train_fraction": args.train_fraction,
        "seed": targs.seed,
        "test_accuracy": sum(correct) / 10,
        "dev_accuracy": 0.5,
        "n_train": 20,
        "global_steps": 2,
        "timings": {"train_s": 1.0, "test_generation_s": 0.5},
        "train_tokens_per_s": 9.0,
        "train_exclusions": {"kept_parse_failure": 0, "excluded_parse_failure": 1},
        "teacher_test": {"n_parsed": 0},
    }
    reporting.write_metrics(targs.output_dir, metrics)
    return metrics


def test_compare_seed_loop_and_pooled_mcnemar(tmp_path, monkeypatch):
    """Every (mode, labels, fraction) repeats per seed; McNemar pools the paired rows; a rerun resumes."""
    calls = []

    def fake_main(script_args, training_args):
        calls.append((script_args.mode, training_args.seed))
        return _fake_run(script_args, training_args)

    monkeypatch.setattr(step_by_step, "main", fake_main)
    train, test = _write_data(tmp_path)
    out = tmp_path / "cmp"
    argv = _args("unused-model", train, test, out, "--seeds", "0", "1", "2", "--skip_finished")
    runs = compare_step_by_step.main(*compare_step_by_step.make_parser().parse_args_and_config(argv))
    assert calls == [(mode, seed) for mode in ("standard", "task_prefix") for seed in (0, 1, 2)]
    assert [r["run"] for r in runs][:2] == ["gt-standard-f1-s0", "gt-standard-f1-s1"]
    summary = comparison.seed_summary(runs, str(out), "standard")
    step = next(r for r in summary if r["mode"] == "task_prefix")
    assert step["seeds"] == 3 and step["pooled wins/losses"] == "18/3"  # 6 wins and 1 loss per seed, 3 seeds
    assert step["pooled McNemar p"] == pytest.approx(comparison.mcnemar_p(18, 3)) and step["pooled McNemar p"] < 0.01
    assert step["test_acc_mean"] == pytest.approx((0.8 + 0.9 + 0.8) / 3) and step["test_acc_std"] > 0
    assert "pooled McNemar p" in (out / "summary.md").read_text()
    # Resuming reuses finished runs instead of training them again.
    calls.clear()
    rerun = compare_step_by_step.main(*compare_step_by_step.make_parser().parse_args_and_config(argv))
    assert calls == [] and [r["test_accuracy"] for r in rerun] == [r["test_accuracy"] for r in runs]


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        step_by_step.StepByStepArguments(mode="cot")
    with pytest.raises(ValueError, match="alpha"):
        step_by_step.StepByStepArguments(alpha=2.0)
    with pytest.raises(ValueError, match="label_source"):
        step_by_step.StepByStepArguments(label_source="palm")


@pytest.mark.slow
def test_recipe_on_real_palm_svamp(data_root, tiny_llama_dir, tmp_path):
    """The palm:<task> source on the real data (tiny student, a handful of steps)."""
    out = tmp_path / "palm"
    flags = {
        "task": "svamp",
        "model_name_or_path": tiny_llama_dir,
        "output_dir": out,
        "max_train_samples": 16,
        "max_eval_samples": 4,
        "max_test_samples": 4,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "eval_strategy": "no",
        "report_to": "none",
        "max_input_length": 64,
        "max_rationale_length": 32,
        "max_new_tokens": 8,
    }
    args = [item for name, value in flags.items() for item in (f"--{name}", str(value))]
    metrics = step_by_step.main(*step_by_step.make_parser().parse_args_and_config(args))
    assert metrics["teacher_train"]["n"] == 720  # 800 train rows minus the carved 10 % validation
    assert 0.9 < metrics["teacher_train"]["parse_rate"] < 1.0
    assert metrics["teacher_test"]["n"] == 4 and metrics["n_train"] <= 16


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_score_the_same_test_rows_as_one(tiny_t5_dir, tmp_path):
    """A 2-process CPU run (DDP over gloo) with the same global batch equals the 1-process run, row for row.

    Validation (during training) and test generation are sharded across the ranks and gathered in row order; only
    the main process writes the run's files. 5 test rows: the second rank's share is padded, the padding dropped.
    """
    # Dropout draws different masks when the batch is split over two ranks: off, so both runs compute the same thing.
    student = tmp_path / "student"
    shutil.copytree(tiny_t5_dir, student)
    config = json.loads((student / "config.json").read_text())
    (student / "config.json").write_text(json.dumps({**config, "dropout_rate": 0.0}))
    train, test = _write_data(tmp_path)
    extra_row = _nli_row("Tonight: A cat sleeps.", "An animal rests.", 0)
    test.write_text(test.read_text() + json.dumps(extra_row) + "\n")

    def argv(out, per_device_batch):
        common = _args(student, train, test, out, "--mode", "task_prefix", "--max_steps", "2")
        return common + ["--per_device_train_batch_size", str(per_device_batch), "--generation_batch_size", "2"]

    single = step_by_step.main(*step_by_step.make_parser().parse_args_and_config(argv(tmp_path / "one", 4)))
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, *launcher, str(REPO / "recipes" / "step_by_step.py"), *argv(tmp_path / "two", 2)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    double = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert single["distributed"] == {
        "distributed_type": "NO",
        "num_processes": 1,
        "wrapper": single["distributed"]["wrapper"],
    }
    assert double["distributed"] == {
        "distributed_type": "MULTI_CPU",
        "num_processes": 2,
        "wrapper": "DistributedDataParallel",
    }
    rows = {}
    for name in ("one", "two"):
        lines = (tmp_path / name / "predictions.jsonl").read_text().splitlines()
        rows[name] = [json.loads(line) for line in lines]
    assert len(rows["one"]) == 5
    assert [(r["id"], r["input"]) for r in rows["two"]] == [(r["id"], r["input"]) for r in rows["one"]]
    assert [r["prediction"] for r in rows["two"]] == [r["prediction"] for r in rows["one"]]
    for key in ("test_accuracy", "dev_accuracy", "train_loss"):
        assert double[key] == pytest.approx(single[key], rel=1e-4, abs=1e-6), key
    assert (double["global_steps"], double["n_test"], double["n_dev"]) == (2, 5, single["n_dev"])
