"""toolkit.training.tracking: report_to validation, the tensorboard extra's error, head curves, --resume_from_checkpoint."""

from __future__ import annotations

import sys
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
