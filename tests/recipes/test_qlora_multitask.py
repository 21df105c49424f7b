"""End to end: recipes/qlora_multitask.py on a tiny Llama in 4-bit NF4 on CPU, with baselines, merge and push."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("bitsandbytes")


def _recipe():
    spec = importlib.util.spec_from_file_location("qlora_multitask_recipe", REPO / "recipes" / "qlora_multitask.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
        "--model_name_or_path", str(tiny_llama_dir),
        "--tasks", f"{topic}:topic", f"{slots}:intent_slots",
        "--task_weights", "1.0", "3.0",
        "--max_text_tokens", "8",
        "--max_new_tokens", "12",
        "--output_dir", str(tmp_path / "run"),
        "--max_steps", "3",
        "--per_device_train_batch_size", "4",
        "--learning_rate", "5e-3",
        "--logging_steps", "1",
        "--save_strategy", "no",
        "--bf16", "false",
        "--gradient_checkpointing", "false",
        "--report_to", "none",
    ]  # fmt: skip


def test_qlora_multitask_end_to_end_4bit(tmp_path, tiny_llama_dir, tiny_bert_dir, fake_hub):
    from safetensors.torch import load_file

    recipe = _recipe()
    topic, slots = _write_tasks(tmp_path)
    argv = _common(tmp_path, tiny_llama_dir, topic, slots) + [
        "--encoder_model", str(tiny_bert_dir),
        "--merge_adapter", "true",
        "--push_to_hub", "true",
        "--hub_model_id", "fake/qlora-mt",
        "--hub_token", fake_hub.token,
    ]  # fmt: skip
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
        "adapter_config.json", "adapter_model.safetensors", "metrics.json", "results.md", "predictions.jsonl",
        "training_curves.png", "confusion_news_topic.png", "confusion_snipsish_intent_slots.png", "README.md", "report.html",
        "run_config.json", "merged",
    }  # fmt: skip
    assert expected <= {p.name for p in run.iterdir()}

    # Every model of the table is there, side by side, with the same task columns.
    results = (run / "results.md").read_text()
    for model in ("multi-task QLoRA", "single-task QLoRA: news:topic", "intent model + slot model", "encoder"):
        assert model in results
    header = results.splitlines()[0]
    for column in (
        "news acc", "news acc (snapped)", "news macro-F1", "snipsish intent acc", "snipsish intent acc (snapped)",
        "snipsish intent macro-F1", "snipsish slot F1", "snipsish EM", "train steps", "train tokens", "train CPU-s",
    ):  # fmt: skip
        assert f"| {column} |" in header
    assert "acc (strict)" in results and "invalid labels" in results
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"multitask", "single:news:topic", "single:snipsish:intent", "single:snipsish:slots", "encoder"} <= set(
        metrics
    )
    # Issue 12 item 14: the headline "acc" column is the strict accuracy, the snapped one sits in its own column.
    news = metrics["multitask"]["eval"]["news:topic"]
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in results.splitlines()[2].split("|")]))
    assert cells["news acc"] == f"{news['topic_accuracy']:.4f}"
    assert cells["news acc (snapped)"] == f"{news['topic_accuracy_snapped']:.4f}"
    # Issue 12 item 16: compute per row, and per_model baselines visibly cost a multiple of the multi-task model.
    assert metrics["baseline_budget"] == {"mode": "per_model", "steps_per_model": None}
    compute = {c["approach"]: c for c in metrics["tables"]["compute"]}
    assert compute["multi-task"]["train steps"] == 3 and compute["multi-task"]["train tokens"] > 0
    assert compute["single-task LoRA (all)"]["models"] == 3 and compute["single-task LoRA (all)"]["train steps"] == 9
    assert compute["multi-task"]["train CPU-s"] > 0 and compute["single-task LoRA (all)"]["CPU-s × multi-task"] > 1
    assert "CPU-s × multi-task" in results and "baseline_budget=per_model" in results
    # Issue 12 item 7: the table says which rows it scored.
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
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from toolkit.training.sft import merge_adapter

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


def test_config_validation(tmp_path):
    recipe = _recipe()
    with pytest.raises(ValueError, match="task_weights"):
        recipe.MultitaskArguments(tasks=["snips:intent"], task_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="unknown baselines"):
        recipe.MultitaskArguments(baselines=["roberta"])
    with pytest.raises(ValueError, match="unknown task type"):
        recipe.MultitaskArguments(tasks=["snips:ner"])
    with pytest.raises(ValueError, match="hub_push"):
        recipe.MultitaskArguments(hub_push="everything")
    with pytest.raises(ValueError, match="test_path entries"):
        recipe.MultitaskArguments(tasks=["snips:intent", "20ng:topic"], test_path=["x.jsonl"])
    with pytest.raises(ValueError, match="eval_split"):
        recipe.MultitaskArguments(eval_split="train")
    with pytest.raises(ValueError, match="baseline_budget"):
        recipe.MultitaskArguments(baseline_budget="double")


def test_qlora_multitask_equal_total_budget_and_test_path(tmp_path, tiny_llama_dir, tiny_bert_dir):
    """Issue 12 items 16 and 7: split_by_mixture baselines share the multi-task steps; --test_path replaces a split."""
    recipe = _recipe()
    topic, slots = _write_tasks(tmp_path)
    other = tmp_path / "other_test.jsonl"
    other.write_text("".join(json.dumps({"text": f"rocket orbit {i}", "label": "sci.space"}) + "\n" for i in range(3)))
    argv = _common(tmp_path, tiny_llama_dir, topic, slots) + [
        "--max_steps", "4",
        "--quantization", "false",
        "--encoder_model", str(tiny_bert_dir),
        "--baseline_budget", "split_by_mixture",
        "--test_path", str(other), "-",
    ]  # fmt: skip
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
        "--quantization", "false", "--baselines", "single_task", "--baseline_budget", "match_task_rows",
        "--dev_curve_rows", "2", "--eval_strategy", "steps", "--eval_steps", "1", "--label_decoding", "free",
    ]  # fmt: skip
    summary = recipe.main(*_parse(recipe, argv))
    history = summary["multitask"]["train"]["log_history"]
    assert [e["step"] for e in history if "eval_loss" in e] == [1, 2, 3]
    # Mixture 1:3 over 3 steps: topic round(0.75) = 1 step, intent and slots round(2.25) = 2 steps each.
    steps = summary["baseline_budget"]["steps_per_model"]
    assert steps == {"news:topic": 1, "snipsish:intent": 2, "snipsish:slots": 2}
    for name, n in steps.items():
        assert summary[f"single:{name}"]["train"]["train_steps"] == n
        assert not any("eval_loss" in e for e in summary[f"single:{name}"]["train"]["log_history"])
    assert "baseline_budget=match_task_rows" in (tmp_path / "run" / "results.md").read_text()


@pytest.mark.slow  # two fresh Python processes importing torch + transformers + bitsandbytes: ~45 s on 2 busy cores
def test_memory_benchmark_runs_both_variants(tmp_path, tiny_llama_dir):
    """benchmarks/qlora_memory.py: each variant in its own process, same batches, ratios computed from measurements."""
    spec = importlib.util.spec_from_file_location("qlora_memory", REPO / "benchmarks" / "qlora_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
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
