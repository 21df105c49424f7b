"""toolkit.training.tracking: report_to validation, the tensorboard extra's error, head curves, the dev curve,
--resume_from_checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from toolkit.training import tracking


def test_report_to_list_and_validation():
    assert tracking.report_to_list(None) == tracking.report_to_list("none") == tracking.report_to_list([]) == []
    assert tracking.report_to_list(["none"]) == []
    assert tracking.report_to_list("tensorboard") == ["tensorboard"]
    with pytest.raises(ValueError, match=r"\['wandb'\] is not supported here"):
        tracking.check_report_to(["tensorboard", "wandb"])
    with pytest.raises(ValueError, match="not supported"):
        tracking.check_report_to("all")  # a loop of our own logs to what it names, nothing implicit


def test_missing_tensorboard_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "distill-toolkit\[tensorboard\]"'):
        tracking.require_tensorboard(["tensorboard"])
    with pytest.raises(ImportError, match="tensorboard"):
        tracking.check_report_to(["tensorboard"])
    assert tracking.require_tensorboard("none") is None
    assert tracking.require_tensorboard("all") is None  # transformers' "all" = whatever is installed


def test_write_history_round_trip_and_rerun_replaces(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 2.0 / e, "val_accuracy": 0.5, "note": "x"} for e in (1, 2, 3)
    ]
    for _ in range(2):  # the second write replaces the first instead of adding points
        tracking.write_history(history, tmp_path / "run")
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["eval/accuracy", "eval/loss", "train/loss"]
    points = acc.Scalars("train/loss")
    assert [p.step for p in points] == [1, 2, 3]
    assert [p.value for p in points] == pytest.approx([1.0, 0.5, 1 / 3])


HISTORY = [
    {"loss": 2.0, "step": 5},
    {"eval_loss": 1.5, "eval_accuracy": 0.25, "eval_runtime": 0.1, "step": 10, "epoch": 0.5},
    {"loss": 1.2, "step": 15},
    {"eval_loss": 1.25, "eval_accuracy": 0.5, "step": 20, "epoch": 1.0},
    {"train_runtime": 3.0, "step": 20},
]


def test_dev_curve_is_every_evaluation_of_the_log_history():
    assert tracking.dev_curve(HISTORY) == [{"step": 10, "eval_loss": 1.5}, {"step": 20, "eval_loss": 1.25}]
    assert tracking.dev_curve([{"loss": 1.0, "step": 1}]) == []


def test_dev_curve_carries_every_metric_asked_for():
    curve = tracking.dev_curve(HISTORY, ("eval_loss", "eval_accuracy"))
    assert curve == [
        {"step": 10, "eval_loss": 1.5, "eval_accuracy": 0.25},
        {"step": 20, "eval_loss": 1.25, "eval_accuracy": 0.5},
    ]
    assert tracking.dev_curve([{"eval_loss": 1.0, "step": 3}], ("eval_loss", "eval_accuracy")) == []


def _args(out, value):
    return SimpleNamespace(output_dir=str(out), resume_from_checkpoint=value)


def test_resume_checkpoint(tmp_path):
    for value in (None, "", "false", False):
        assert tracking.resume_checkpoint(_args(tmp_path, value)) is None
    with pytest.raises(FileNotFoundError, match="no checkpoint-<step> folder"):
        tracking.resume_checkpoint(_args(tmp_path, "true"))
    with pytest.raises(FileNotFoundError, match="no checkpoint-<step> folder"):
        tracking.resume_checkpoint(_args(tmp_path / "missing", "true"))
    for step in (2, 10, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-99.txt").write_text("not a folder")
    for value in ("true", "True", "latest", True):  # the newest by step number, not by name
        assert tracking.resume_checkpoint(_args(tmp_path, value)) == str(tmp_path / "checkpoint-10")
    assert tracking.resume_checkpoint(_args(tmp_path, str(tmp_path / "checkpoint-2"))) == str(
        tmp_path / "checkpoint-2"
    )
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        tracking.resume_checkpoint(_args(tmp_path, str(tmp_path / "checkpoint-3")))


def tensorboard_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every event file under ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return found


def test_flatten_final_metrics_keeps_the_numbers_of_nested_tables():
    tables = {"corrector": {"gleu": 61.5, "n": 12}, "baselines": {"greedy": {"gleu": 58.0}}, "note": "x"}
    tables["predictions"] = [{"gleu": 1.0}]
    tables["nan"] = float("nan")
    flat = tracking.flatten_final_metrics(tables)
    assert flat == {"final/corrector/gleu": 61.5, "final/corrector/n": 12.0, "final/baselines/greedy/gleu": 58.0}


def test_final_metrics_reach_tensorboard_through_the_trainer(tmp_path, tiny_llama_dir):
    pytest.importorskip("tensorboard")
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    rows = [{"input_ids": torch.tensor([5, 6, 7, 8]), "labels": torch.tensor([5, 6, 7, 8])}] * 2
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=2, report_to=["tensorboard"], use_cpu=True, logging_steps=1
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    trainer.train()
    history_before = list(trainer.state.log_history)
    logged = tracking.log_final_metrics({"test": {"gleu": 61.5}, "baseline": {"gleu": 58.25}}, trainer=trainer)
    assert logged == {"final/test/gleu": 61.5, "final/baseline/gleu": 58.25}
    scalars = tensorboard_scalars(tmp_path / "run")
    final = {tag: points for tag, points in scalars.items() if "final/" in tag}
    assert {tag.split("final/", 1)[1]: points[-1][1] for tag, points in final.items()} == {
        "test/gleu": 61.5,
        "baseline/gleu": 58.25,
    }
    assert all(points[-1][0] == trainer.state.global_step for points in final.values())
    assert any(tag.endswith("loss") for tag in scalars)  # the training curve is still there, beside the results
    assert trainer.state.log_history == history_before


def test_final_metrics_of_an_own_loop_go_to_its_log_dir(tmp_path):
    pytest.importorskip("tensorboard")
    tracking.write_history([{"epoch": 1, "train_loss": 0.5}], tmp_path / "tb")
    tracking.log_final_metrics({"test": {"accuracy": 0.75}}, log_dir=tmp_path / "tb", step=1)
    scalars = tensorboard_scalars(tmp_path / "tb")
    assert scalars["final/test/accuracy"] == [(1, 0.75)]
    assert scalars["train/loss"] == [(1, 0.5)]
