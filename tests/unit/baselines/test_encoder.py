"""Encoder baselines: sequence + token classification train, predict aligned outputs, and fail loudly on bad input."""

from __future__ import annotations

import pytest

datasets = pytest.importorskip("datasets")

from toolkit.baselines.encoder import finetune_sequence_classifier, finetune_token_classifier  # noqa: E402
from toolkit.methods.multitask.formats import score_task  # noqa: E402


def _cls_split(n: int, offset: int = 0):
    # Two trivially separable classes: the label word is in the text, so a few steps must learn it.
    texts, labels = [], []
    for i in range(n):
        if (i + offset) % 2:
            texts.append("this movie was great , i loved it")
            labels.append(1)
        else:
            texts.append("the dog runs home quickly")
            labels.append(0)
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)


def test_sequence_classifier_learns_and_reports(tiny_bert_dir):
    train, dev, test = _cls_split(32), _cls_split(8, 1), _cls_split(10)
    out = finetune_sequence_classifier(
        str(tiny_bert_dir), train, dev, test, max_steps=30, learning_rate=5e-3, batch_size=8, max_length=16
    )
    assert out["predictions"] and len(out["predictions"]) == len(test)
    assert set(out["predictions"]) <= {"neg", "pos"}
    assert out["golds"][:2] == ["neg", "pos"]
    assert out["accuracy"] == 1.0  # separable toy data: anything less means the training loop is broken
    assert 0.0 <= out["macro_f1"] <= 1.0 and out["dev_accuracy"] is not None
    assert {"train_seconds", "infer_seconds", "train_cpu_seconds"} <= set(out)
    assert out["wrapper"] == "BertForSequenceClassification"  # one process: the Trainer wraps nothing
    assert any("loss" in e for e in out["log_history"])


def test_sequence_classifier_string_labels_and_errors(tiny_bert_dir):
    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"]})
    out = finetune_sequence_classifier(str(tiny_bert_dir), ds, None, ds, max_steps=1, batch_size=2, max_length=8)
    assert out["labels"] == ["x", "y"] and out["dev_accuracy"] is None
    with pytest.raises(ValueError, match="empty"):
        finetune_sequence_classifier(str(tiny_bert_dir), ds.select([]), None, ds, max_steps=1)
    with pytest.raises(ValueError, match="no 'sentence' column"):
        finetune_sequence_classifier(str(tiny_bert_dir), ds, None, ds, text_column="sentence", max_steps=1)
    bad = datasets.Dataset.from_dict({"text": ["a", "b"], "label": ["z", "x"]})
    with pytest.raises(ValueError, match="not among"):  # a train label outside the label set cannot be trained on
        finetune_sequence_classifier(str(tiny_bert_dir), bad, None, ds, label_names=["x", "y"], max_steps=1)


def test_sequence_classifier_label_set_from_train_and_unseen_test_gold(tiny_bert_dir):
    """Labels come from train; a test-only gold is scored as an error, not a crash or a class."""
    train = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"]})
    test = datasets.Dataset.from_dict({"text": ["a", "b", "e"], "label": ["x", "y", "z"]})
    out = finetune_sequence_classifier(str(tiny_bert_dir), train, None, test, max_steps=2, batch_size=2, max_length=8)
    assert out["labels"] == ["x", "y"] and out["golds"] == ["x", "y", "z"]
    assert set(out["predictions"]) <= {"x", "y"} and out["accuracy"] <= 2 / 3
    # Compute is reported: steps and tokens trained (2 steps x 2 rows x 3 tokens: [CLS] letter [SEP]).
    assert out["train_steps"] == 2 and out["train_tokens"] == 12


def test_encoder_and_llm_scoring_give_the_same_macro_f1(tiny_bert_dir):
    """One macro-F1 definition. The encoder's predictions, written as LLM answers and scored by
    toolkit.methods.multitask.formats.score_task, give the encoder's own numbers, also when a train label is absent from test."""
    train, test = _cls_split(16), _cls_split(6)
    names = ["neg", "pos", "neutral"]  # the train label set; "neutral" has no test row
    out = finetune_sequence_classifier(
        str(tiny_bert_dir), train, None, test, label_names=names, max_steps=3, learning_rate=5e-3, batch_size=8
    )
    rows = [{"text": t, "label": g} for t, g in zip(test["text"], out["golds"])]
    m, _ = score_task("topic", rows, [f"topic: {p}" for p in out["predictions"]], names)
    assert out["macro_f1"] == pytest.approx(m["macro_f1"])
    assert out["accuracy"] == pytest.approx(m["topic_accuracy"])
    assert m["macro_f1"] > 0  # otherwise the comparison proves nothing


def test_token_classifier_aligns_words(tiny_bert_dir):
    rows = {
        "tokens": [["play", "the", "beatles", "on", "spotify"], ["book", "a", "table", "in", "paris"]] * 8,
        "slot_tags": [["O", "B-artist", "I-artist", "O", "B-service"], ["O", "O", "O", "O", "B-city"]] * 8,
    }
    ds = datasets.Dataset.from_dict(rows)
    out = finetune_token_classifier(
        str(tiny_bert_dir), ds, ds.select(range(2)), ds, max_steps=40, learning_rate=5e-3, batch_size=8
    )
    assert [len(p) for p in out["predictions"]] == [len(t) for t in rows["tokens"]]
    assert out["tags"][0] == "O" and "B-city" in out["tags"]
    assert out["slot_f1"] > 0.5  # memorising two sentences is easy; 0 would mean labels are misaligned
    assert out["dev_slot_f1"] is not None

    # A word cut off by max_length is predicted "O" rather than dropped, so rows stay aligned with gold.
    short = finetune_token_classifier(str(tiny_bert_dir), ds, None, ds.select(range(1)), max_steps=1, max_length=4)
    assert len(short["predictions"][0]) == 5 and short["predictions"][0][-1] == "O"

    bad = datasets.Dataset.from_dict({"tokens": [["a", "b"]], "slot_tags": [["O"]]})
    with pytest.raises(ValueError, match="2 tokens but 1 tags"):
        finetune_token_classifier(str(tiny_bert_dir), bad, None, ds, max_steps=1)


def test_token_classifier_tag_set_from_train_only(tiny_bert_dir):
    """A slot type only the test split shows never enters the tagger's head; its spans are scored as misses."""
    train = datasets.Dataset.from_dict({"tokens": [["play", "jazz"]] * 4, "slot_tags": [["O", "B-genre"]] * 4})
    test = datasets.Dataset.from_dict({"tokens": [["in", "paris"]], "slot_tags": [["O", "B-city"]]})
    out = finetune_token_classifier(str(tiny_bert_dir), train, None, test, max_steps=1, batch_size=4)
    assert out["tags"] == ["O", "B-genre"] and out["golds"] == [["O", "B-city"]]
    assert out["slot_f1"] == 0.0 and out["train_steps"] == 1 and out["train_tokens"] > 0
    with pytest.raises(ValueError, match="not among"):
        finetune_token_classifier(str(tiny_bert_dir), train, None, test, tag_names=["O"], max_steps=1)
