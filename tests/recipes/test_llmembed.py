"""recipes/llmembed.py end to end on a tiny Llama + tiny BERT: every method, every artifact, cache, push."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POS = "great loved good movie positive music song".split()
NEG = "problem apples gave away negative left school".split()


def _recipe():
    spec = importlib.util.spec_from_file_location("recipe_llmembed", REPO / "recipes" / "llmembed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    return [
        "--train_path", str(toy_data / "train.jsonl"), "--test_path", str(toy_data / "test.jsonl"),
        "--max_train_samples", "60", "--val_size", "20", "--max_test_samples", "20",
        "--llm_model", str(llama), "--encoder_model", str(bert), "--llm_layers", "-2", "-1",
        "--proj_dim", "16", "--hidden_dims", "32", "--epochs", "30", "--patience", "30",
        "--encoder_epochs", "1", "--few_shot_max_test", "6", "--few_shot_max_new_tokens", "4",
        "--output_dir", str(out), "--cache_dir", str(cache), *extra,
    ]  # fmt: skip


def test_recipe_end_to_end_cache_and_push(toy_data, tiny_llama_dir, tiny_bert_dir, tmp_path, fake_hub, monkeypatch):
    recipe = _recipe()
    out, cache = tmp_path / "run", tmp_path / "cache"
    push = ["--push_to_hub", "true", "--hub_model_id", "fake-user/llmembed-head", "--hub_token", fake_hub.token]
    metrics = recipe.main(
        *recipe.make_parser().parse_args_and_config(_args(toy_data, out, cache, tiny_llama_dir, tiny_bert_dir, *push))
    )

    methods = {"llmembed", "llm_only", "last_layer_only", "encoder_only", "llmembed_last_token", "finetuned_encoder"}
    methods |= {"few_shot_prompt"}
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
        assert 0.0 <= row["accuracy"] <= 1.0 and row["infer_s"] > 0, name
        assert row["energy_wh"] == pytest.approx(row["cpu_s"] * 10.0 / 3600)
    # The toy problem is separable by bag of words: the LLMEmbed head must beat chance clearly.
    assert rows["llmembed"]["accuracy"] >= 0.8
    # Cost columns: extraction + head = training CPU; the pooling ablation shares the LLM's forward passes.
    for name in ("llmembed", "llmembed_last_token", "llm_only"):
        row = rows[name]
        assert row["extract_cpu_s"] > 0 and row["head_cpu_s"] > 0 and row["infer_cpu_s_per_1k"] > 0, name
        assert row["train_cpu_s"] == pytest.approx(row["extract_cpu_s"] + row["head_cpu_s"])
    assert rows["finetuned_encoder"]["extract_cpu_s"] == 0 and rows["finetuned_encoder"]["head_cpu_s"] > 0
    assert metrics["extraction"]["llm_last"]["train"] == metrics["extraction"]["llm"]["train"]
    # The rendered tables say which rows they score, and each has one n_test value.
    sections = (out / "results.md").read_text().split("### ")[1:]
    assert [s.splitlines()[0] for s in sections][0] == "All 20 test rows" and len(sections) == 2
    for section in sections:
        lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
        col = [c.strip() for c in lines[0].strip("|").split("|")].index("n_test")
        assert len({ln.strip("|").split("|")[col].strip() for ln in lines[2:]}) == 1, section
    assert not rows["llmembed"]["features_cached"]
    from toolkit.run import ARTIFACTS

    for f in (*ARTIFACTS, "accuracy_vs_energy.png", "accuracy_vs_inference_cpu.png", "confusion_matrix.png",
              "model.safetensors", "head_config.json"):  # fmt: skip
        assert (out / f).is_file(), f
    assert recipe.DESCRIPTION in (out / "README.md").read_text()
    # The saved head is the fused variant and predicts what the run reported.
    from toolkit.methods.llmembed.head import load_head

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
    from toolkit.methods.llmembed import embeddings

    def boom(*a, **k):
        raise AssertionError("extraction ran on a cached re-run")

    monkeypatch.setattr(embeddings, "extract_embeddings", boom)
    monkeypatch.setattr(embeddings, "load_backbone", boom)
    again = recipe.main(
        *recipe.make_parser().parse_args_and_config(
            _args(
                toy_data,
                tmp_path / "run2",
                cache,
                tiny_llama_dir,
                tiny_bert_dir,
                "--run_encoder_baseline",
                "false",
                "--run_few_shot",
                "false",
            )  # fmt: skip
        )
    )
    rows2 = {r["method"]: r for r in again["tables"]["results"]}
    assert all(r["features_cached"] for r in rows2.values())
    # Same splits and seed -> the same head and predictions; the cached extraction cost is still charged.
    assert rows2["llmembed"]["accuracy"] == rows["llmembed"]["accuracy"]
    assert rows2["llmembed"]["cpu_s"] > 0


def test_config_validation():
    recipe = _recipe()
    with pytest.raises(ValueError):
        recipe.LLMEmbedArguments(variants=["nope"])
    with pytest.raises(ValueError):
        recipe.LLMEmbedArguments(encoder_model=None)  # default variants include llmembed / encoder_only
    with pytest.raises(ValueError):
        recipe.DataArguments(dataset="imdb")
    with pytest.raises(ValueError):
        recipe.DataArguments(max_train_samples=10, val_size=10)
    with pytest.raises(ValueError):
        recipe.RunArguments(push_to_hub=True)


def _write(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for text, label in rows:
            fh.write(json.dumps({"text": text, "label": label}) + "\n")
    return str(path)


def test_splits_given_files_else_carved_disjoint(tmp_path):
    """A test file is tested on as given; without one, test and validation are carved apart from training."""
    recipe = _recipe()
    train = _write(tmp_path / "train.jsonl", [(f"train {i}", "ab"[i % 2]) for i in range(50)])
    dev = _write(tmp_path / "dev.jsonl", [(f"dev {i}", "ab"[i % 2]) for i in range(8)])
    test = _write(tmp_path / "test.jsonl", [(f"test {i}", "ba"[i % 2]) for i in range(12)])
    sizes = {"max_train_samples": 30, "val_size": 5, "max_test_samples": 10}

    tr, va, te, names, where = recipe.load_splits(
        recipe.DataArguments(train_path=train, dev_path=dev, test_path=test, **sizes), seed=0
    )
    assert names == ["a", "b"] and where == {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}
    assert len(tr[0]) == 25 and all(t.startswith("train") for t in tr[0])
    assert len(va[0]) == 5 and all(t.startswith("dev") for t in va[0])
    assert len(te[0]) == 10 and all(t.startswith("test") for t in te[0])
    assert all(y == "ab".index("ba"[int(t.split()[1]) % 2]) for t, y in zip(*te))

    # Train file only: the test rows must not be training rows (they used to be the train file itself).
    tr, va, te, _, where = recipe.load_splits(recipe.DataArguments(train_path=train, **sizes), seed=0)
    assert (len(tr[0]), len(va[0]), len(te[0])) == (25, 5, 10)
    assert not set(te[0]) & set(tr[0]) and not set(te[0]) & set(va[0]) and not set(va[0]) & set(tr[0])
    assert where["test"] == where["dev"] == "carved from train.jsonl"


def test_official_splits_from_the_loaders(data_root):
    """SST-2 validates on its official dev split and tests on its official test split; AG News (no dev split)
    carves validation from train exactly as before."""
    from toolkit.tasks import classification

    recipe = _recipe()
    sizes = {"max_train_samples": 60, "val_size": 20, "max_test_samples": 30}
    tr, va, te, names, where = recipe.load_splits(recipe.DataArguments(dataset="sst2", **sizes), seed=42)
    dev_texts = set(classification.load_sst2("dev")["text"])
    test_texts = set(classification.load_sst2("test")["text"])
    assert len(va[0]) == 20 and set(va[0]) <= dev_texts and where["dev"] == "sst2 dev, official"
    assert len(te[0]) == 30 and set(te[0]) <= test_texts and where["test"] == "sst2 test, official"
    assert len(tr[0]) == 40 and names == ["negative", "positive"]

    tr, va, te, _, where = recipe.load_splits(recipe.DataArguments(dataset="ag_news", **sizes), seed=42)
    pool = classification.load_ag_news("train").shuffle(seed=42)
    assert va[0] == pool["text"][:20] and tr[0] == pool["text"][20:60] and where["dev"] == "carved from ag_news train"
    assert set(te[0]) <= set(classification.load_ag_news("test")["text"])
