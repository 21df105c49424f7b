"""recipes/llmembed.py end to end on a tiny Llama + tiny BERT: every method, every artifact, cache, push."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from recipes import llmembed
from toolkit.methods.llmembed import feature_cache
from toolkit.methods.llmembed.comparison import QUALITY_COLUMNS
from toolkit.methods.llmembed.config import VARIANTS, LLMEmbedConfig
from toolkit.methods.llmembed.head import load_head
from toolkit.run import ARTIFACTS
from toolkit.tasks import classification
from toolkit.testing.tiny_models import build_tiny_bert

REPO = Path(__file__).resolve().parents[2]
POS = "great loved good movie positive music song".split()
NEG = "problem apples gave away negative left school".split()


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    """A separable two-class toy set (label words differ), strings as labels."""
    root = tmp_path_factory.mktemp("llmembed-data")
    rng = random.Random(0)
    for split, n in (("train", 60), ("test", 20)):
        with open(root / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(n):
                label = "pos" if i % 2 == 0 else "neg"
                words = [rng.choice(POS if label == "pos" else NEG) for _ in range(rng.randint(2, 12))]
                fh.write(json.dumps({"text": " ".join(words), "label": label}) + "\n")
    return root


def _args(toy_data, out, cache, llama, bert, *extra):
    data = ["--train_path", str(toy_data / "train.jsonl"), "--test_path", str(toy_data / "test.jsonl")]
    sizes = ["--max_train_samples", "60", "--val_size", "20", "--max_test_samples", "20"]
    models = ["--llm_model", str(llama), "--encoder_model", str(bert), "--llm_layers", "-2", "-1"]
    head = ["--proj_dim", "16", "--hidden_dims", "32", "--epochs", "30", "--patience", "30"]
    baselines = ["--encoder_epochs", "1", "--few_shot_max_test", "6", "--few_shot_max_new_tokens", "4"]
    run = ["--output_dir", str(out), "--cache_dir", str(cache)]
    return [*data, *sizes, *models, *head, *baselines, *run, *extra]


def _recipe():
    """The recipe module, for the other recipe tests that drive it (artifacts, tensorboard)."""
    return llmembed


def _run(argv: list[str]) -> dict:
    return llmembed.main(*llmembed.make_parser().parse_args_and_config(argv))


def test_recipe_end_to_end_cache_and_push(toy_data, tiny_llama_dir, tiny_bert_dir, tmp_path, fake_hub, monkeypatch):
    out, cache = tmp_path / "run", tmp_path / "cache"
    push = ["--push_to_hub", "true", "--hub_model_id", "fake-user/llmembed-head", "--hub_token", fake_hub.token]
    metrics = _run(_args(toy_data, out, cache, tiny_llama_dir, tiny_bert_dir, *push))

    # No --variants: every variant runs (the fused model, its ablations, the official head), then the baselines.
    methods = {*VARIANTS, "finetuned_encoder", "few_shot_prompt"}
    # Every row of a table is scored on the same test rows: the prompt covered the first 6 of 20 rows, so it is
    # not in the all-rows table, and a second table scores every method on those 6 rows.
    assert {len({r["n_test"] for r in table}) for table in metrics["tables"].values()} == {1}
    assert {r["n_test"] for r in metrics["tables"]["results"]} == {20}
    rows = {r["method"]: r for r in metrics["tables"]["results"]}
    assert set(rows) == methods - {"few_shot_prompt"}
    subset = {r["method"]: r for r in metrics["tables"]["subset"]}
    assert set(subset) == methods and {r["n_test"] for r in subset.values()} == {6}
    assert 0 <= subset["few_shot_prompt"]["invalid"] <= 6
    assert metrics["sizes"] == {"train": 40, "val": 20, "test": 20}
    assert metrics["splits"]["test"].endswith("test.jsonl") and metrics["splits"]["dev"].startswith("carved")
    for name, row in rows.items():
        assert 0.0 <= row["accuracy"] <= 1.0, name
        assert row["energy_wh"] == pytest.approx(row["cpu_s"] * 10.0 / 3600)
    # The toy problem is separable by bag of words: the LLMEmbed head must beat chance clearly.
    assert rows["llmembed"]["accuracy"] >= 0.8
    # Cost columns: extraction + head = training CPU; each head is charged the extraction of the sources it reads;
    # the pooling ablation shares the LLM's forward passes.
    extracted = {name: cost["train"]["cpu_s"] for name, cost in metrics["extraction"].items()}
    assert rows["llmembed"]["extract_cpu_s"] == pytest.approx(extracted["llm"] + extracted["encoder"])
    assert rows["llm_only"]["extract_cpu_s"] == pytest.approx(extracted["llm"])
    for name in ("llmembed", "llmembed_last_token", "llm_only"):
        row = rows[name]
        assert row["train_cpu_s"] == pytest.approx(row["extract_cpu_s"] + row["head_cpu_s"])
    assert rows["finetuned_encoder"]["extract_cpu_s"] == 0
    assert metrics["extraction"]["llm_last"]["train"] == metrics["extraction"]["llm"]["train"]
    # The rendered tables say which rows they score, and each has one n_test value.
    sections = (out / "results.md").read_text().split("### ")[1:]
    assert [s.splitlines()[0] for s in sections][0] == "All 20 test rows" and len(sections) == 2
    for section in sections:
        lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
        col = [c.strip() for c in lines[0].strip("|").split("|")].index("n_test")
        assert len({ln.strip("|").split("|")[col].strip() for ln in lines[2:]}) == 1, section
    assert not rows["llmembed"]["features_cached"]
    plots = ("accuracy_vs_energy.png", "accuracy_vs_inference_cpu.png", "confusion_matrix.png")
    for name in (*ARTIFACTS, *plots, "model.safetensors", "head_config.json"):
        assert (out / name).is_file(), name
    assert llmembed.DESCRIPTION in (out / "README.md").read_text()
    assert metrics["distributed"]["distributed_type"] == "NO" and metrics["distributed"]["num_processes"] == 1
    # The saved head is the fused variant and predicts what the run reported.
    head = load_head(out)
    assert head.config.label_names == ["neg", "pos"] and len(head.config.view_dims) == 3  # 2 LLM layers + encoder
    assert "| llmembed |" in (out / "results.md").read_text()
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 20 and {"gold", "llmembed", "finetuned_encoder"} <= set(preds[0])
    assert "few_shot_prompt" in preds[0] and "few_shot_prompt" not in preds[-1]  # prompted on a prefix only
    # Pushed the run (head + card) to the fake Hub; the token is in no saved file.
    files = fake_hub.files("fake-user/llmembed-head")
    assert {"model.safetensors", "head_config.json", "README.md", "metrics.json"} <= set(files)
    assert metrics["hub_url"].startswith(fake_hub.url)
    for f in ("run_config.json", "metrics.json", "README.md"):
        assert fake_hub.token not in (out / f).read_text()

    # Re-run: every feature comes from the cache, no backbone is loaded, no extraction forward pass runs.
    def boom(*args, **kwargs):
        raise AssertionError("extraction ran on a cached re-run")

    monkeypatch.setattr(feature_cache, "extract_embeddings", boom)
    monkeypatch.setattr(feature_cache, "load_backbone", boom)
    no_baselines = ["--run_encoder_baseline", "false", "--run_few_shot", "false"]
    again = _run(_args(toy_data, tmp_path / "run2", cache, tiny_llama_dir, tiny_bert_dir, *no_baselines))
    rows2 = {r["method"]: r for r in again["tables"]["results"]}
    assert all(r["features_cached"] for r in rows2.values())
    # Same splits and seed -> the same head and predictions; the cached extraction cost is still charged.
    assert rows2["llmembed"]["accuracy"] == rows["llmembed"]["accuracy"]
    assert rows2["llmembed"]["extract_cpu_s"] == pytest.approx(rows["llmembed"]["extract_cpu_s"])


def test_bad_flags_are_refused_at_parse_time(tmp_path):
    parser = llmembed.make_parser()
    for argv in (["--variants", "nope"], ["--llm_pooling", "max"], ["--dataset", "imdb"], ["--push_to_hub", "true"]):
        with pytest.raises((ValueError, SystemExit)):
            parser.parse_args_and_config([*argv, "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError):
        llmembed.DataArguments(max_train_samples=10, val_size=10)


def test_the_parser_builds_the_method_config():
    parsed = llmembed.make_parser().parse_args_and_config(["--llm_layers", "-3", "-1", "--proj_dim", "8"])
    config = parsed[1]
    assert isinstance(config, LLMEmbedConfig) and config.llm_layers == [-3, -1] and config.proj_dim == 8


def _write(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for text, label in rows:
            fh.write(json.dumps({"text": text, "label": label}) + "\n")
    return str(path)


def test_splits_given_files_else_carved_disjoint(tmp_path):
    """A test file is tested on as given; without one, test and validation are carved apart from training."""
    train = _write(tmp_path / "train.jsonl", [(f"train {i}", "ab"[i % 2]) for i in range(50)])
    dev = _write(tmp_path / "dev.jsonl", [(f"dev {i}", "ab"[i % 2]) for i in range(8)])
    test = _write(tmp_path / "test.jsonl", [(f"test {i}", "ba"[i % 2]) for i in range(12)])
    sizes = {"max_train_samples": 30, "val_size": 5, "max_test_samples": 10}

    tr, va, te, names, where = llmembed.load_splits(
        llmembed.DataArguments(train_path=train, dev_path=dev, test_path=test, **sizes), seed=0
    )
    assert names == ["a", "b"] and where == {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}
    assert len(tr[0]) == 25 and all(t.startswith("train") for t in tr[0])
    assert len(va[0]) == 5 and all(t.startswith("dev") for t in va[0])
    assert len(te[0]) == 10 and all(t.startswith("test") for t in te[0])
    assert all(y == "ab".index("ba"[int(t.split()[1]) % 2]) for t, y in zip(*te))

    # Train file only: the test rows must not be training rows (they used to be the train file itself).
    tr, va, te, _, where = llmembed.load_splits(llmembed.DataArguments(train_path=train, **sizes), seed=0)
    assert (len(tr[0]), len(va[0]), len(te[0])) == (25, 5, 10)
    assert not set(te[0]) & set(tr[0]) and not set(te[0]) & set(va[0]) and not set(va[0]) & set(tr[0])
    assert where["test"] == where["dev"] == "carved from train.jsonl"


def test_split_seed_fixes_the_rows_whatever_the_training_seed(tmp_path):
    train = _write(tmp_path / "train.jsonl", [(f"train {i}", "ab"[i % 2]) for i in range(50)])
    sizes = {"max_train_samples": 30, "val_size": 5, "max_test_samples": 10}
    fixed = [
        llmembed.load_splits(llmembed.DataArguments(train_path=train, split_seed=7, **sizes), seed=s) for s in (0, 1)
    ]
    assert fixed[0][:3] == fixed[1][:3]
    free = [llmembed.load_splits(llmembed.DataArguments(train_path=train, **sizes), seed=s) for s in (0, 1)]
    assert free[0][2] != free[1][2]  # without split_seed the run's seed carves the test rows


def test_official_splits_from_the_loaders(data_root):
    """SST-2 validates on its official dev split and tests on its official test split; AG News (no dev split)
    carves validation from train exactly as before."""
    sizes = {"max_train_samples": 60, "val_size": 20, "max_test_samples": 30}
    tr, va, te, names, where = llmembed.load_splits(llmembed.DataArguments(dataset="sst2", **sizes), seed=42)
    dev_texts = set(classification.load_sst2("dev")["text"])
    test_texts = set(classification.load_sst2("test")["text"])
    assert len(va[0]) == 20 and set(va[0]) <= dev_texts and where["dev"] == "sst2 dev, official"
    assert len(te[0]) == 30 and set(te[0]) <= test_texts and where["test"] == "sst2 test, official"
    assert len(tr[0]) == 40 and names == ["negative", "positive"]

    tr, va, te, _, where = llmembed.load_splits(llmembed.DataArguments(dataset="ag_news", **sizes), seed=42)
    pool = classification.load_ag_news("train").shuffle(seed=42)
    assert va[0] == pool["text"][:20] and tr[0] == pool["text"][20:60] and where["dev"] == "carved from ag_news train"
    assert set(te[0]) <= set(classification.load_ag_news("test")["text"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dropout_free_bert(folder: Path) -> Path:
    """A tiny BERT without dropout: under DDP each rank draws its own dropout masks, so only a dropout-free encoder
    trains to the same weights on 2 processes as on 1 (same global batches, gradients averaged)."""
    build_tiny_bert(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _quality(metrics: dict) -> dict:
    return {
        name: [{column: row.get(column) for column in QUALITY_COLUMNS} for row in rows]
        for name, rows in metrics["tables"].items()
    }


@pytest.mark.slow
def test_two_processes_score_the_same_rows_as_one(toy_data, tiny_llama_dir, tmp_path):
    """2-process CPU DDP (gloo) through `accelerate launch` equals the 1-process run: same rows, same order, same
    metrics; extraction, encoder training and prompting really ran on both ranks."""
    bert = _dropout_free_bert(tmp_path / "bert")
    # 40 training rows in global batches of 8: no ragged last batch, whose padding would differ between the runs.
    extra = ["--encoder_batch_size", "8", "--extract_batch_size", "4", "--few_shot_batch_size", "2"]
    one_out, two_out = tmp_path / "one", tmp_path / "two"
    one = _run(_args(toy_data, one_out, tmp_path / "cache1", tiny_llama_dir, bert, *extra))

    two = _launch_two_processes(_args(toy_data, two_out, tmp_path / "cache2", tiny_llama_dir, bert, *extra))

    assert two["distributed"] == {
        "distributed_type": "MULTI_CPU",
        "num_processes": 2,
        "wrapper": "DistributedDataParallel",
    }
    assert one["distributed"]["distributed_type"] == "NO" and one["distributed"]["num_processes"] == 1
    assert _quality(two) == _quality(one)
    one_rows = (one_out / "predictions.jsonl").read_text().splitlines()
    two_rows = (two_out / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(row) for row in two_rows] == [json.loads(row) for row in one_rows]
    # The features were extracted afresh by the two ranks and equal one process's within float tolerance: the heads
    # trained on them follow the same validation curve and end with the same weights.
    assert not any(row["features_cached"] for row in two["tables"]["results"] if "features_cached" in row)
    for mine, theirs in zip(two["head_history"], one["head_history"], strict=True):
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], abs=1e-4)
    two_head, one_head = load_file(str(two_out / "model.safetensors")), load_file(str(one_out / "model.safetensors"))
    for name, tensor in one_head.items():
        torch.testing.assert_close(two_head[name], tensor, atol=1e-4, rtol=1e-3)

    # Re-run on the cache the main process wrote: both ranks take every feature from it, and score the same.
    no_baselines = ["--run_encoder_baseline", "false", "--run_few_shot", "false"]
    cached_argv = _args(
        toy_data, tmp_path / "cached", tmp_path / "cache2", tiny_llama_dir, bert, *extra, *no_baselines
    )
    cached = _launch_two_processes(cached_argv)
    assert all(row["features_cached"] for row in cached["tables"]["results"])
    heads = [
        row for row in _quality(two)["results"] if row["method"] in {r["method"] for r in cached["tables"]["results"]}
    ]
    assert _quality(cached)["results"] == heads


def _launch_two_processes(argv: list[str]) -> dict:
    """The recipe on 2 CPU processes (gloo) through `accelerate launch`; its metrics.json.

    Not via a ``use_cpu: true`` accelerate config or ``--cpu``: with accelerate 1.15 those start a single process.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(REPO)}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(_free_port()), "-m", "recipes.llmembed"]
    proc = subprocess.run([*launch, *argv], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = Path(argv[argv.index("--output_dir") + 1])
    return json.loads((out / "metrics.json").read_text())
