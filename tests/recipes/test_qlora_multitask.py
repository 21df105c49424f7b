"""End to end: recipes/qlora_multitask.py on a tiny Llama in 4-bit NF4 on CPU, with baselines, merge and push."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from recipes import qlora_multitask
from toolkit.training.sft import merge_adapter

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("bitsandbytes")


def _recipe():
    """The recipe module (other recipe tests reuse this file's helpers)."""
    return qlora_multitask


def _write_tasks(root: Path) -> tuple[Path, Path]:
    """Two tiny task folders in the loaders' formats: topic (text/label) and SNIPS-like intent + BIO slots."""
    topic, slots = root / "news", root / "snipsish"
    topic.mkdir()
    slots.mkdir()
    texts = {"sci.space": "the rocket launch to orbit", "rec.autos": "my car engine needs new oil"}
    utterances = [
        ("play the beatles on spotify".split(), ["O", "B-artist", "I-artist", "O", "B-service"], "PlayMusic"),
        ("book a table in paris".split(), ["O", "O", "O", "O", "B-city"], "BookRestaurant"),
    ]
    for split, n in (("train", 16), ("test", 4)):
        with open(topic / f"{split}.jsonl", "w") as fh:
            for i in range(n):
                label = list(texts)[i % 2]
                fh.write(json.dumps({"text": f"{texts[label]} {i}", "label": label}) + "\n")
        with open(slots / f"{split}.jsonl", "w") as fh:
            for i in range(n):
                tokens, tags, intent = utterances[i % 2]
                fh.write(json.dumps({"tokens": tokens, "slot_tags": tags, "intent": intent}) + "\n")
    return topic, slots


def _parse(recipe, argv):
    return recipe.make_parser().parse_args_and_config(argv)


def _common(tmp_path, tiny_llama_dir, topic, slots):
    return [
        "--model_name_or_path",
        str(tiny_llama_dir),
        "--tasks",
        f"{topic}:topic",
        f"{slots}:intent_slots",
        "--task_weights",
        "1.0",
        "3.0",
        "--max_text_tokens",
        "8",
        "--max_new_tokens",
        "12",
        "--output_dir",
        str(tmp_path / "run"),
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "5e-3",
        "--logging_steps",
        "1",
        "--save_strategy",
        "no",
        "--bf16",
        "false",
        "--gradient_checkpointing",
        "false",
        "--report_to",
        "none",
    ]


def test_qlora_multitask_end_to_end_4bit(tmp_path, tiny_llama_dir, tiny_bert_dir, fake_hub):
    recipe = _recipe()
    topic, slots = _write_tasks(tmp_path)
    argv = _common(tmp_path, tiny_llama_dir, topic, slots) + [
        "--encoder_model",
        str(tiny_bert_dir),
        "--merge_adapter",
        "true",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "fake/qlora-mt",
        "--hub_token",
        fake_hub.token,
    ]
    script_args, training_args = _parse(recipe, argv)
    assert script_args.quantization is True
    summary = recipe.main(script_args, training_args)
    run = tmp_path / "run"

    # Loss was logged at every step, and it is a real number.
    train = summary["multitask"]["train"]
    losses = [e["loss"] for e in train["log_history"] if "loss" in e]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    # The mixture honoured the 1:3 weights (12 rows drawn for 3 steps x 4).
    assert train["mixture"] == {"news:topic": 0.25, "snipsish:intent_slots": 0.75}
    assert sum(train["mixture_counts"].values()) == 12

    # LoRA B matrices start at zero: any non-zero entry means the adapter really trained.
    weights = load_file(run / "adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(float(v.abs().max()) > 0 for v in lora_b)
    assert json.loads((run / "adapter_config.json").read_text())["r"] == 16

    expected = {
        "adapter_config.json",
        "adapter_model.safetensors",
        "metrics.json",
        "results.md",
        "predictions.jsonl",
        "training_curves.png",
        "confusion_news_topic.png",
        "confusion_snipsish_intent_slots.png",
        "README.md",
        "report.html",
        "run_config.json",
        "merged",
    }
    assert expected <= {p.name for p in run.iterdir()}

    # Every model of the table is there, side by side, with the same task columns.
    results = (run / "results.md").read_text()
    for model in ("multi-task QLoRA", "single-task QLoRA: news:topic", "intent model + slot model", "encoder"):
        assert model in results
    header = results.splitlines()[0]
    for column in (
        "news acc",
        "news acc (snapped)",
        "news macro-F1",
        "snipsish intent acc",
        "snipsish intent acc (snapped)",
        "snipsish intent macro-F1",
        "snipsish slot F1",
        "snipsish EM",
        "train steps",
        "train tokens",
        "train CPU-s",
    ):
        assert f"| {column} |" in header
    assert "acc (strict)" in results and "invalid labels" in results
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"multitask", "single:news:topic", "single:snipsish:intent", "single:snipsish:slots", "encoder"} <= set(
        metrics
    )
    # The headline "acc" column is the strict accuracy, the snapped one sits in its own column.
    news = metrics["multitask"]["eval"]["news:topic"]
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in results.splitlines()[2].split("|")]))
    assert cells["news acc"] == f"{news['topic_accuracy']:.4f}"
    assert cells["news acc (snapped)"] == f"{news['topic_accuracy_snapped']:.4f}"
    # Compute per row, and per_model baselines visibly cost a multiple of the multi-task model.
    assert metrics["baseline_budget"] == {"mode": "per_model", "steps_per_model": None}
    compute = {c["approach"]: c for c in metrics["tables"]["compute"]}
    assert compute["multi-task"]["train steps"] == 3 and compute["multi-task"]["train tokens"] > 0
    assert compute["single-task LoRA (all)"]["models"] == 3 and compute["single-task LoRA (all)"]["train steps"] == 9
    assert compute["single-task LoRA (all)"]["CPU-s × multi-task"] > 1
    assert "CPU-s × multi-task" in results and "baseline_budget=per_model" in results
    # The table says which rows it scored.
    assert "4 rows of " in results and "test (official)" in results
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert {r["model"] for r in rows} >= {"multitask", "encoder", "single:snipsish:slots"}
    assert sum(r["model"] == "multitask" for r in rows) == 8  # 4 test rows x 2 tasks

    # Model card lists tasks, weights, quantization, metrics; the token is never written anywhere.
    card = (run / "README.md").read_text()
    assert "news:topic" in card and "p=0.750" in card and "NF4" in card and "snipsish EM" in card
    for path in (run / "README.md", run / "run_config.json", run / "metrics.json"):
        assert fake_hub.token not in path.read_text()

    # Merged checkpoint = base (full precision) + adapter folded in: plain weights, no LoRA keys.
    merged = load_file(run / "merged" / "model.safetensors")
    assert merged and not any("lora" in k for k in merged)

    # Pushed the adapter (not the baselines / merged folders).
    files = fake_hub.files("fake/qlora-mt")
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "results.md"} <= set(files)
    assert not any(name.startswith(("baselines/", "merged/")) for name in files)


def test_qlora_multitask_plain_lora_and_merge_matches(tmp_path, tiny_llama_dir):
    recipe = _recipe()
    topic, slots = _write_tasks(tmp_path)
    argv = _common(tmp_path, tiny_llama_dir, topic, slots) + ["--quantization", "false", "--baselines", "none"]
    script_args, training_args = _parse(recipe, argv + ["--eval_split", "dev"])
    summary = recipe.main(script_args, training_args)
    assert not any(k.startswith(("single:", "encoder")) for k in summary)
    # No dev file in the task folders: dev is carved from train (test_size rows, at most half of the 16), and the
    # table says so.
    assert summary["multitask"]["eval"]["news:topic"]["n"] == 8
    assert summary["scored"]["news:topic"].startswith("8 rows of carved from")
    run = tmp_path / "run"
    assert "LoRA on the full-precision model" in (run / "README.md").read_text()

    # merge_and_unload gives the same logits as base + adapter.
    out = merge_adapter(str(run), str(tiny_llama_dir), str(tmp_path / "merged"))
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    with torch.no_grad():
        ref = PeftModel.from_pretrained(base, str(run)).eval()(ids).logits
        got = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()(ids).logits
    assert torch.allclose(ref, got, atol=1e-4)


def test_bad_arguments_fail_at_parse_time(tmp_path):
    parser = qlora_multitask.make_parser()
    base = ["--output_dir", str(tmp_path)]
    with pytest.raises(ValueError, match="hub_push"):
        parser.parse_args_and_config([*base, "--hub_push", "everything"])
    with pytest.raises(ValueError, match="unknown baselines"):
        parser.parse_args_and_config([*base, "--baselines", "roberta"])
    with pytest.raises(ValueError, match="task_weights"):
        parser.parse_args_and_config([*base, "--tasks", "snips:intent", "--task_weights", "1", "2"])


def test_method_config_is_a_copy_of_the_method_fields(tmp_path):
    script_args, _ = qlora_multitask.make_parser().parse_args_and_config(
        [
            "--output_dir",
            str(tmp_path),
            "--bf16",
            "false",
            "--tasks",
            "snips:intent",
            "--baselines",
            "none",
            "--merge_adapter",
            "true",
        ]
    )
    config = script_args.method_config()
    assert type(config) is qlora_multitask.MultitaskConfig and not hasattr(config, "merge_adapter")
    assert config.tasks == ["snips:intent"] and config.baselines == []
    config.tasks.append("20ng:topic")
    assert script_args.tasks == ["snips:intent"]


def test_qlora_multitask_equal_total_budget_and_test_path(tmp_path, tiny_llama_dir, tiny_bert_dir):
    """split_by_mixture baselines share the multi-task steps; --test_path replaces a split."""
    recipe = _recipe()
    topic, slots = _write_tasks(tmp_path)
    other = tmp_path / "other_test.jsonl"
    other.write_text("".join(json.dumps({"text": f"rocket orbit {i}", "label": "sci.space"}) + "\n" for i in range(3)))
    argv = _common(tmp_path, tiny_llama_dir, topic, slots) + [
        "--max_steps",
        "4",
        "--quantization",
        "false",
        "--encoder_model",
        str(tiny_bert_dir),
        "--baseline_budget",
        "split_by_mixture",
        "--test_path",
        str(other),
        "-",
    ]
    script_args, training_args = _parse(recipe, argv)
    summary = recipe.main(script_args, training_args)
    # Mixture 1:3 over 4 steps: topic 1/4, intent 3/8, slots 3/8 -> 1 + 2 + 1 (one step each first, then the rest).
    steps = summary["baseline_budget"]["steps_per_model"]
    assert steps == {"news:topic": 1, "snipsish:intent": 2, "snipsish:slots": 1}
    assert summary["multitask"]["train"]["train_steps"] == 4 == sum(steps.values())
    for name, n in steps.items():
        assert summary[f"single:{name}"]["train"]["train_steps"] == n
    encoder_steps = sum(m["train_steps"] for m in summary["encoder"]["eval"].values())
    assert encoder_steps == 4
    compute = {c["approach"]: c for c in summary["compute"]}
    assert compute["single-task LoRA (all)"]["train steps"] == compute["multi-task"]["train steps"] == 4
    # The topic task was scored on the given file (3 rows), the joint task on its official test file (4 rows).
    assert summary["multitask"]["eval"]["news:topic"]["n"] == 3
    assert summary["multitask"]["eval"]["snipsish:intent_slots"]["n"] == 4
    assert "--test_path" in summary["scored"]["news:topic"]
    results = (tmp_path / "run" / "results.md").read_text()
    assert "baseline_budget=split_by_mixture" in results and "other_test.jsonl (--test_path)" in results


def test_qlora_multitask_dev_curve_task_rows_budget_free_decoding(tmp_path, tiny_llama_dir):
    """dev_curve_rows logs a dev loss every eval_steps; match_task_rows gives each baseline its task's row share."""
    recipe = _recipe()
    topic, slots = _write_tasks(tmp_path)
    argv = _common(tmp_path, tiny_llama_dir, topic, slots) + [
        "--quantization",
        "false",
        "--baselines",
        "single_task",
        "--baseline_budget",
        "match_task_rows",
        "--dev_curve_rows",
        "2",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "1",
        "--label_decoding",
        "free",
    ]
    summary = recipe.main(*_parse(recipe, argv))
    history = summary["multitask"]["train"]["log_history"]
    assert [e["step"] for e in history if "eval_loss" in e] == [1, 2, 3]
    # Each single-task model replays the multi-task model's draw of its entry: the same rows, as often, for the
    # steps they fill (both models of the joint entry train the joint entry's rows).
    multitask = summary["multitask"]["train"]
    entries = {
        "news:topic": "news:topic",
        "snipsish:intent": "snipsish:intent_slots",
        "snipsish:slots": "snipsish:intent_slots",
    }
    assert sum(len(rows) for rows in multitask["mixture_rows"].values()) == 3 * 4  # 3 steps x batch 4
    assert summary["baseline_budget"]["replayed_multitask_rows"] is True
    for name, entry in entries.items():
        single = summary[f"single:{name}"]["train"]
        assert single["mixture_counts"] == {name: len(multitask["mixture_rows"][entry])}
        assert single["train_steps"] == math.ceil(len(multitask["mixture_rows"][entry]) / 4)  # batch 4, one process
        assert not any("eval_loss" in e for e in single["log_history"])
    assert "baseline_budget=match_task_rows" in (tmp_path / "run" / "results.md").read_text()
    # every prediction row names its test item: unique per (model, task), the same items for every model
    predictions = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    ids: dict[tuple[str, str], list[str]] = {}
    for row in predictions:
        ids.setdefault((row["model"], row["task"]), []).append(row["id"])
    assert all(len(set(items)) == len(items) == 4 for items in ids.values())
    assert ids[("single:snipsish:intent", "snipsish:intent")] == ids[("multitask", "snipsish:intent_slots")]
    assert ids[("single:news:topic", "news:topic")] == ids[("multitask", "news:topic")]


def test_split_seed_not_the_training_seed_picks_the_scored_rows(tmp_path, tiny_llama_dir, monkeypatch):
    """--seed varies the training draw and order; the carved and subsampled rows follow --split_seed only."""
    recipe = _recipe()
    topic, slots = _write_tasks(tmp_path)
    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise InterruptedError  # stop before any model is loaded

    monkeypatch.setattr(recipe, "load_mixture_splits", record)
    for argv, seed in (([], 42), (["--split_seed", "5"], 5)):
        with pytest.raises(InterruptedError):
            recipe.main(*_parse(recipe, _common(tmp_path, tiny_llama_dir, topic, slots) + ["--seed", "3", *argv]))
        assert seen["seed"] == seed


@pytest.mark.slow  # two fresh Python processes importing torch + transformers + bitsandbytes: ~45 s on 2 busy cores
def test_memory_benchmark_runs_both_variants(tmp_path, tiny_llama_dir):
    """benchmarks/qlora_memory.py: each variant in its own process, same batches, ratios computed from measurements."""
    bench = importlib.import_module("benchmarks.qlora_memory")
    argv = ["--model", str(tiny_llama_dir), "--steps", "2", "--warmup", "0", "--batch_size", "2", "--seq_len", "16"]
    results = bench.main(argv + ["--output_dir", str(tmp_path)])
    by = {r["variant"]: r for r in results}
    assert set(by) >= {"qlora-4bit", "lora-fp32"}
    for r in results:
        assert r["peak_rss_mb"] > r["rss_baseline_mb"] > 0 and r["tokens_per_second"] > 0
        assert math.isfinite(r["loss_first"]) and r["trainable_params"] > 0
    # 4-bit weights are smaller than fp32 ones even on a tiny model (only the Linear layers are quantized).
    assert by["qlora-4bit"]["weights_footprint_mb"] < by["lora-fp32"]["weights_footprint_mb"]
    saved = json.loads((tmp_path / "qlora_memory.json").read_text())
    assert saved["ratios"]["weights_ratio_4bit_over_fp32"] < 1
    assert "tokens/s" in (tmp_path / "qlora_memory.md").read_text()


def _scores(summary: dict) -> dict:
    """``{(model, task, metric): value}`` of every model's test scores, without timings (they differ between runs)."""
    evals = {name: entry["eval"] for name, entry in summary.items() if isinstance(entry, dict) and "eval" in entry}
    return {
        (name, task, key): value
        for name, tasks in evals.items()
        for task, metrics in tasks.items()
        for key, value in metrics.items()
        if "second" not in key and not key.startswith("train_")
    }


@pytest.mark.slow  # two launches of the recipe with its baselines: ~2 min on 2 busy cores
def test_two_processes_score_the_same_rows_as_one(tmp_path, tiny_llama_dir, tiny_bert_dir):
    """2-process CPU DDP with the same global batch: same rows, same order, same scores as one process."""
    topic, slots = _write_tasks(tmp_path)

    def argv(out, per_device_batch):
        return _common(tmp_path, tiny_llama_dir, topic, slots) + [
            "--output_dir",
            str(out),
            "--per_device_train_batch_size",
            str(per_device_batch),
            "--max_steps",
            "2",
            "--quantization",
            "false",
            "--lora_dropout",
            "0",  # dropout masks are drawn per rank: no dropout, same gradients
            "--baselines",
            "single_task",
            "encoder",
            "--encoder_model",
            str(tiny_bert_dir),
        ]

    one = qlora_multitask.main(*_parse(qlora_multitask, argv(tmp_path / "one", 4)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(REPO)}
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29547",
    ]
    command = [*launch, "-m", "recipes.qlora_multitask", *argv(tmp_path / "two", 2)]
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())

    assert one["distributed"]["num_processes"] == 1
    assert two["distributed"] == {
        "distributed_type": "MULTI_CPU",
        "num_processes": 2,
        "wrapper": "DistributedDataParallel",
    }
    assert two["multitask"]["train"]["mixture_counts"] == one["multitask"]["train"]["mixture_counts"]
    rows_one = [json.loads(line) for line in (tmp_path / "one" / "predictions.jsonl").read_text().splitlines()]
    rows_two = [json.loads(line) for line in (tmp_path / "two" / "predictions.jsonl").read_text().splitlines()]
    keys = ("model", "task", "gold", "gold_tags", "output", "label", "tags")
    assert [[row.get(k) for k in keys] for row in rows_two] == [[row.get(k) for k in keys] for row in rows_one]
    assert _scores(two) == pytest.approx(_scores(one))
    losses = [
        [entry["loss"] for entry in run["multitask"]["train"]["log_history"] if "loss" in entry] for run in (one, two)
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


LAUNCH_PROBE = """
import json, os, sys
from accelerate import PartialState
from toolkit.models.loading import fsdp_enabled, kbit_device_map

state = PartialState()
env = {k: v for k, v in os.environ.items() if k.startswith("FSDP_") or k == "ACCELERATE_USE_FSDP"}
record = {"fsdp": fsdp_enabled(), "device_map": kbit_device_map(), "env": env, "type": state.distributed_type.value}
with open(os.path.join(sys.argv[1], f"rank{state.process_index}.json"), "w") as f:
    json.dump(record, f)
"""


def _launch_probe(tmp_path, config: Path) -> list[dict]:
    probe = tmp_path / "probe.py"
    probe.write_text(LAUNCH_PROBE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    command = [*launch, "--main_process_port", "29561", str(probe), str(tmp_path)]
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]


def test_fsdp_qlora_config_asks_for_what_sharded_4bit_needs(tmp_path):
    """The QLoRA + FSDP launch config, through the real launcher: flat params, rank-0 loading, gathered saves."""
    records = _launch_probe(tmp_path, REPO / "recipes" / "accelerate_configs" / "fsdp_qlora.yaml")
    env = records[0]["env"]
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "1"
    assert env["FSDP_USE_ORIG_PARAMS"] == "false"
    assert env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true" and env["FSDP_SYNC_MODULE_STATES"] == "true"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    if torch.cuda.is_available():
        assert all(r["fsdp"] and r["device_map"] is None for r in records)  # FSDP places the 4-bit weights
    else:  # no GPU: accelerate does not run FSDP, and the loader places the weights itself
        assert all(not r["fsdp"] and r["device_map"] == {"": "cpu"} for r in records)


@pytest.mark.gpu
def test_qlora_fsdp_trains_and_saves_a_loadable_adapter(tmp_path, tiny_llama_dir):
    """QLoRA + FSDP on every visible GPU (bf16 storage): trains, scores, saves an adapter PEFT loads."""
    topic, slots = _write_tasks(tmp_path)
    out = tmp_path / "fsdp"
    argv = _common(tmp_path, tiny_llama_dir, topic, slots) + [
        "--output_dir",
        str(out),
        "--baselines",
        "none",
        "--bf16",
        "true",
        "--bnb_4bit_quant_storage",
        "bfloat16",
    ]
    config = REPO / "recipes" / "accelerate_configs" / "fsdp_qlora.yaml"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    launch += ["--num_processes", str(torch.cuda.device_count()), "--main_process_port", "29563"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([*launch, "-m", "recipes.qlora_multitask", *argv], env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["distributed"]["distributed_type"] == "FSDP"
    assert metrics["distributed"]["wrapper"] == "FullyShardedDataParallel"
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    assert PeftModel.from_pretrained(base, str(out)).peft_config["default"].r == 16
