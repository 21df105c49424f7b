"""toolkit.baselines.multitask: baselines return their rows (nothing of the caller's is changed), in table order."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from datasets import Dataset

from toolkit.baselines import multitask
from toolkit.methods.multitask.config import MultitaskConfig
from toolkit.methods.multitask.data import TaskSplits


def _joint_split() -> TaskSplits:
    rows = {"tokens": [["play", "jazz"]] * 4, "slot_tags": [["O", "B-genre"]] * 4, "intent": ["PlayMusic"] * 4}
    data = Dataset.from_dict(rows)
    return TaskSplits("snips:intent_slots", "snips", "intent_slots", data, data, ["PlayMusic"], "snips:intent_slots")


def _fake_single(name, part, *, config, training_args, tokenizer, max_steps, replay=None):
    """A trained-and-scored single-task model: its info, its scores, one prediction row per test row."""
    info = {"train_steps": max_steps or 3, "train_tokens": 10, "train_cpu_seconds": 1.0, "train_seconds": 1.0}
    scores = {"intent_accuracy": 1.0} if part.task == "intent" else {"slot_f1": 0.5}
    rows = [{"model": name, "task": part.name, "label": "PlayMusic", "gold": "PlayMusic"} for _ in part.test]
    rows = [row | {"tags": ["O", "B-genre"], "gold_tags": ["O", "B-genre"]} for row in rows]
    return info, {part.name: scores | {"n": len(part.test)}}, rows


def test_single_task_baselines_return_a_two_model_row_for_a_joint_task(monkeypatch):
    monkeypatch.setattr(multitask, "_train_single", _fake_single)
    config = MultitaskConfig(tasks=["snips:intent_slots"], baselines=["single_task"], baseline_budget="split_evenly")
    splits = [_joint_split()]
    info = {"train_steps": 4, "mixture": {"snips:intent_slots": 1.0}}
    before = copy.deepcopy(info)
    training_args = object()

    out = multitask.run_baselines(
        config=config, splits=splits, tokenizer=None, training_args=training_args, multitask_info=info
    )
    assert info == before and splits[0].task == "intent_slots"
    assert out.summary["baseline_budget"] == {
        "mode": "split_evenly",
        "steps_per_model": {"snips:intent": 2, "snips:slots": 2},
    }
    assert {"single:snips:intent", "single:snips:slots"} <= set(out.summary)
    assert out.summary["single:snips:intent_slots:two_model_exact_match"] == 1.0
    assert [row["model"] for row in out.predictions] == ["single:snips:intent"] * 4 + ["single:snips:slots"] * 4
    assert [row["model"] for row in out.tables.table] == [
        "single-task QLoRA x2 (intent model + slot model): snips:intent_slots"
    ]
    assert out.tables.totals[0]["models"] == 2 and out.tables.totals[0]["train_steps"] == 4


def test_task_rows_budget_replays_the_multitask_models_draw_of_each_entry(monkeypatch):
    seen = {}

    def record(name, part, *, replay=None, **_):
        seen[name] = replay
        return _fake_single(name, part, config=None, training_args=None, tokenizer=None, max_steps=None)

    monkeypatch.setattr(multitask, "_train_single", record)
    config = MultitaskConfig(
        tasks=["snips:intent_slots"], baselines=["single_task"], baseline_budget="match_task_rows"
    )
    drawn = {"snips:intent_slots": [3, 0, 3, 1]}
    info = {"train_steps": 2, "mixture": {"snips:intent_slots": 1.0}, "mixture_rows": drawn}
    out = multitask.run_baselines(
        config=config, splits=[_joint_split()], tokenizer=None, training_args=None, multitask_info=info
    )
    assert seen == {"single:snips:intent": [3, 0, 3, 1], "single:snips:slots": [3, 0, 3, 1]}
    assert out.summary["baseline_budget"]["replayed_multitask_rows"] is True


def test_replayed_rows_are_the_drawn_rows_as_often_for_the_steps_they_fill():
    split = multitask.as_task(_joint_split(), "intent")
    split.train = split.train.map(lambda row, index: {"tokens": ["row", str(index)]}, with_indices=True)
    args = SimpleNamespace(max_steps=99, per_device_train_batch_size=2, gradient_accumulation_steps=1, world_size=1)
    rows, info = multitask.replayed_rows(split, [3, 0, 3], args, use_chat=False, max_listed_labels=10)
    assert [prompt.strip().split("Utterance: ")[-1] for prompt in rows["prompt"]] == ["row 3", "row 0", "row 3"]
    assert args.max_steps == 2 and info["mixture_counts"] == {"snips:intent": 3}
    with pytest.raises(ValueError, match="drew no rows"):
        multitask.replayed_rows(split, [], args, use_chat=False, max_listed_labels=10)


def test_no_baselines_is_an_empty_result(monkeypatch):
    monkeypatch.setattr(multitask, "_train_single", pytest.fail)
    config = MultitaskConfig(tasks=["snips:intent_slots"], baselines=["none"])
    out = multitask.run_baselines(
        config=config,
        splits=[_joint_split()],
        tokenizer=None,
        training_args=None,
        multitask_info={"train_steps": 4, "mixture": {}},
    )
    assert out.predictions == [] and out.tables.table == [] and list(out.summary) == ["baseline_budget"]
