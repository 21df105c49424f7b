"""Tests for toolkit.reporting: metrics JSON, markdown tables, JSONL and PNG plots."""

from __future__ import annotations

import json

import pytest

from toolkit import reporting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 1000  # a real rendered figure, not an empty file
    # IHDR follows the magic; width/height are big-endian uint32 and must be non-zero.
    assert data[12:16] == b"IHDR"
    assert int.from_bytes(data[16:20], "big") > 0 and int.from_bytes(data[20:24], "big") > 0


def test_write_metrics_sorted_floats_kept_and_redacted(tmp_path):
    metrics = {"b": 0.123456789, "a": {"acc": 1, "f1": 0.5}, "config": {"api_key": "sk-secret", "lr": 1e-4}}
    metrics["num_tokens"] = 4096  # TRL logs this: a count, not a secret
    path = reporting.write_metrics(tmp_path / "run", metrics)
    assert path == tmp_path / "run" / "metrics.json"
    text = path.read_text()
    assert "sk-secret" not in text
    loaded = json.loads(text)
    assert loaded["b"] == 0.123456789
    assert loaded["a"] == {"acc": 1, "f1": 0.5}
    assert loaded["config"] == {"api_key": "<redacted>", "lr": 1e-4}
    assert loaded["num_tokens"] == 4096
    assert list(loaded) == ["a", "b", "config", "num_tokens"]
    assert text.index('"acc"') < text.index('"f1"')


def test_write_metrics_converts_numpy_scalars(tmp_path):
    np = pytest.importorskip("numpy")
    path = reporting.write_metrics(tmp_path, {"acc": np.float32(0.5), "n": np.int64(3)}, name="m.json")
    assert json.loads(path.read_text()) == {"acc": 0.5, "n": 3}


def test_markdown_table_exact():
    rows = [{"model": "t5-small", "bleu": 31.456, "n": 10}, {"model": "a|b", "bleu": None}]
    expected = "| model | bleu | n |\n| --- | --- | --- |\n| t5-small | 31.46 | 10 |\n| a\\|b | – | – |\n"
    assert reporting.markdown_table(rows) == expected


def test_markdown_table_columns_and_floatfmt():
    rows = [{"x": 1.0, "y": 2.0, "z": float("nan")}]
    assert reporting.markdown_table(rows, columns=["z", "x"], floatfmt=".3f") == (
        "| z | x |\n| --- | --- |\n| – | 1.000 |\n"
    )
    assert reporting.markdown_table([]) == ""


def test_write_table_and_jsonl(tmp_path):
    path = reporting.write_table(tmp_path, [{"a": 1}], ["a"])
    assert path.name == "results.md"
    assert path.read_text() == "| a |\n| --- |\n| 1 |\n"
    rows = [{"text": "Grüße", "n": 1}, {"text": "x", "n": 2}]
    out = reporting.write_jsonl(tmp_path / "sub" / "rows.jsonl", rows)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert "Grüße" in lines[0]


def _history(with_eval: bool):
    history = [{"loss": 2.0 - 0.1 * i, "step": i * 5, "epoch": i / 10, "learning_rate": 1e-4} for i in range(1, 6)]
    if with_eval:
        history.append({"eval_loss": 1.7, "eval_accuracy": 0.6, "eval_runtime": 1.2, "step": 10, "epoch": 0.2})
        history.append({"eval_loss": 1.5, "eval_accuracy": 0.7, "eval_runtime": 1.1, "step": 25, "epoch": 0.5})
    history.append({"train_runtime": 3.0, "train_loss": 1.8, "step": 25, "epoch": 0.5})
    return history


@pytest.mark.parametrize("with_eval", [True, False])
def test_plot_training_curves(tmp_path, with_eval):
    path = reporting.plot_training_curves(_history(with_eval), tmp_path / "plots" / "curves.png")
    _assert_png(path)


def test_plot_training_curves_eval_panel_changes_width(tmp_path):
    # The eval-metrics panel doubles the figure width: proves eval entries were actually picked up.
    with_eval = reporting.plot_training_curves(_history(True), tmp_path / "a.png").read_bytes()
    without = reporting.plot_training_curves(_history(False), tmp_path / "b.png").read_bytes()
    assert int.from_bytes(with_eval[16:20], "big") == 2 * int.from_bytes(without[16:20], "big")


def test_plot_training_curves_empty_history(tmp_path):
    _assert_png(reporting.plot_training_curves([], tmp_path / "empty.png"))


def test_plot_confusion_matrix(tmp_path):
    golds = ["pos", "neg", "pos", "neu"]
    preds = ["pos", "pos", None, "neu"]
    _assert_png(reporting.plot_confusion_matrix(golds, preds, ["neg", "neu", "pos"], tmp_path / "cm.png"))
    _assert_png(
        reporting.plot_confusion_matrix(golds, golds, ["neg", "neu", "pos"], tmp_path / "cm2.png", normalize=False)
    )


def test_plot_confusion_matrix_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="length"):
        reporting.plot_confusion_matrix(["a"], [], ["a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="not in labels"):
        reporting.plot_confusion_matrix(["zzz"], ["a"], ["a"], tmp_path / "x.png")


def test_plot_xy(tmp_path):
    points = [
        {"system": "student", "cost": 0.0, "acc": 0.7},
        {"system": "student", "cost": 1.0, "acc": 0.8},
        {"system": "teacher", "cost": 5.0, "acc": 0.85},
        {"system": "broken", "cost": None, "acc": 0.1},
    ]
    path = reporting.plot_xy(points, "cost", "acc", "system", tmp_path / "xy.png", title="acc vs cost")
    _assert_png(path)
    _assert_png(reporting.plot_xy(points, "cost", "acc", None, tmp_path / "xy2.png"))


def test_redact_secrets_keeps_token_counts():
    config = {
        "hub_token": "hf_x",
        "teacher": {"api_key": "sk", "max_tokens": 64, "tokenizer_name": "gpt2"},
        "num_tokens": 1200,
        "pad_token": "<pad>",
        "password": None,
        "rows": [{"authorization": "Bearer x", "completion_tokens": 5}],
    }
    assert reporting.redact_secrets(config) == {
        "hub_token": "<redacted>",
        "teacher": {"api_key": "<redacted>", "max_tokens": 64, "tokenizer_name": "gpt2"},
        "num_tokens": 1200,
        "pad_token": "<pad>",
        "password": None,
        "rows": [{"authorization": "<redacted>", "completion_tokens": 5}],
    }


def test_write_metrics_serialises_dataclasses(tmp_path):
    import dataclasses

    @dataclasses.dataclass
    class Result:  # same shape as toolkit.metrics.MetricResult
        name: str
        score: float
        signature: str

    path = reporting.write_metrics(tmp_path, {"bleu": Result("bleu", 31.5, "BLEU|nrefs:1")})
    assert json.loads(path.read_text()) == {"bleu": {"name": "bleu", "score": 31.5, "signature": "BLEU|nrefs:1"}}
