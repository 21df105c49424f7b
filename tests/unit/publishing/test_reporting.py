"""Tests for toolkit.publishing.reporting: metrics JSON, markdown tables, JSONL, and what the PNG plots draw."""

from __future__ import annotations

import json

import pytest

from toolkit.publishing import reporting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 1000  # a real rendered figure, not an empty file
    # IHDR follows the magic; width/height are big-endian uint32 and must be non-zero.
    assert data[12:16] == b"IHDR"
    assert int.from_bytes(data[16:20], "big") > 0 and int.from_bytes(data[20:24], "big") > 0


def test_write_metrics_keeps_order_and_floats_and_redacts(tmp_path):
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
    assert list(loaded) == ["b", "a", "config", "num_tokens"]  # a table row's columns keep their order


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


@pytest.fixture
def figures(monkeypatch):
    """Every figure the plot functions save, captured just before it is written (and closed)."""
    captured = []
    save = reporting._save

    def capture(fig, path):
        captured.append(fig)
        return save(fig, path)

    monkeypatch.setattr(reporting, "_save", capture)
    return captured


def _lines(ax) -> dict:
    """``{label: (xs, ys)}`` of the plotted lines of ``ax``."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_plot_training_curves_loss_and_eval_panels(tmp_path, figures):
    path = reporting.plot_training_curves(_history(True), tmp_path / "plots" / "curves.png", title="run")
    _assert_png(path)
    (fig,) = figures
    loss_ax, eval_ax = fig.axes
    lines = _lines(loss_ax)
    # train loss: the five logging steps only (the final train_loss summary entry is not a point)
    assert lines["train loss"][0] == [5, 10, 15, 20, 25]
    assert lines["train loss"][1] == pytest.approx([1.9, 1.8, 1.7, 1.6, 1.5])
    assert lines["eval loss"] == ([10, 25], [1.7, 1.5])
    assert (loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("step", "loss")
    # eval metrics panel: accuracy, not the runtime bookkeeping
    assert _lines(eval_ax) == {"accuracy": ([10, 25], [0.6, 0.7])}
    assert [t.get_text() for t in eval_ax.get_legend().get_texts()] == ["accuracy"]
    assert fig._suptitle.get_text() == "run"


def test_plot_training_curves_without_eval_has_one_panel(tmp_path, figures):
    reporting.plot_training_curves(_history(False), tmp_path / "curves.png")
    (fig,) = figures
    assert len(fig.axes) == 1 and list(_lines(fig.axes[0])) == ["train loss"]


def test_plot_training_curves_empty_history_says_so(tmp_path, figures):
    _assert_png(reporting.plot_training_curves([], tmp_path / "empty.png"))
    (ax,) = figures[0].axes
    assert not ax.get_lines() and [t.get_text() for t in ax.texts] == ["no loss logged"]


def test_plot_confusion_matrix_counts_other_predictions(tmp_path, figures):
    golds = ["pos", "neg", "pos", "neu"]
    preds = ["pos", "pos", None, "neu"]
    _assert_png(reporting.plot_confusion_matrix(golds, preds, ["neg", "neu", "pos"], tmp_path / "cm.png"))
    reporting.plot_confusion_matrix(golds, golds, ["neg", "neu", "pos"], tmp_path / "cm2.png", normalize=False)
    normalised, counts = (fig.axes[0] for fig in figures)  # axes[1] is the colorbar
    # rows = gold (neg, neu, pos), columns = predicted (+ "other" for the unparsable None), row-normalised
    assert normalised.images[0].get_array().tolist() == [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0.5, 0.5]]
    assert [t.get_text() for t in normalised.get_xticklabels()] == ["neg", "neu", "pos", "other"]
    assert (normalised.get_xlabel(), normalised.get_ylabel()) == ("predicted", "gold")
    assert "0.50" in [t.get_text() for t in normalised.texts]
    assert counts.images[0].get_array().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]
    assert [t.get_text() for t in counts.get_xticklabels()] == ["neg", "neu", "pos"]
    assert counts.get_title() == "confusion matrix"


def test_plot_confusion_matrix_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="length"):
        reporting.plot_confusion_matrix(["a"], [], ["a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="not in labels"):
        reporting.plot_confusion_matrix(["zzz"], ["a"], ["a"], tmp_path / "x.png")


def test_plot_xy_one_sorted_series_per_label(tmp_path, figures):
    points = [
        {"system": "student", "cost": 1.0, "acc": 0.8},
        {"system": "student", "cost": 0.0, "acc": 0.7},
        {"system": "teacher", "cost": 5.0, "acc": 0.85},
        {"system": "broken", "cost": None, "acc": 0.1},
    ]
    _assert_png(reporting.plot_xy(points, "cost", "acc", "system", tmp_path / "xy.png", title="acc vs cost"))
    reporting.plot_xy(points, "cost", "acc", None, tmp_path / "xy2.png")
    by_system, pooled = (fig.axes[0] for fig in figures)
    assert _lines(by_system) == {"student": ([0.0, 1.0], [0.7, 0.8]), "teacher": ([5.0], [0.85])}
    assert (by_system.get_xlabel(), by_system.get_ylabel(), by_system.get_title()) == ("cost", "acc", "acc vs cost")
    assert by_system.get_legend() is not None
    assert _lines(pooled) == {"acc": ([0.0, 1.0, 5.0], [0.7, 0.8, 0.85])} and pooled.get_legend() is None


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
    class Result:  # same shape as toolkit.evaluation.metrics.MetricResult
        name: str
        score: float
        signature: str

    path = reporting.write_metrics(tmp_path, {"bleu": Result("bleu", 31.5, "BLEU|nrefs:1")})
    assert json.loads(path.read_text()) == {"bleu": {"name": "bleu", "score": 31.5, "signature": "BLEU|nrefs:1"}}
