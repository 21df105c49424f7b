"""toolkit.methods.multitask.config: one validated config of the method, built without touching the caller's values."""

from __future__ import annotations

import pytest

from toolkit.methods.multitask.config import MultitaskConfig


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tasks": ["snips:intent"], "task_weights": [1.0, 2.0]}, "task_weights"),
        ({"tasks": []}, "at least one"),
        ({"tasks": ["snips:ner"]}, "unknown task type"),
        ({"baselines": ["roberta"]}, "unknown baselines"),
        ({"tasks": ["snips:intent", "20ng:topic"], "test_path": ["x.jsonl"]}, "test_path entries"),
        ({"tasks": ["snips:intent", "20ng:topic"], "dev_path": ["x.jsonl"]}, "dev_path entries"),
        ({"eval_split": "train"}, "eval_split"),
        ({"baseline_budget": "double"}, "baseline_budget"),
        ({"mixture_strategy": "random"}, "mixture_strategy"),
        ({"label_decoding": "beam"}, "label_decoding"),
        ({"mixture_temperature": 0.0}, "mixture_temperature"),
        ({"max_listed_labels": 0}, "max_listed_labels"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"dev_curve_rows": -1}, "dev_curve_rows"),
    ],
)
def test_bad_settings_are_rejected_with_the_field_named(settings, message):
    with pytest.raises(ValueError, match=message):
        MultitaskConfig(**settings)


def test_construction_leaves_the_callers_lists_alone():
    baselines = ["none"]
    tasks = ["snips:intent_slots", "20ng:topic"]
    weights = [1.0, 3.0]
    config = MultitaskConfig(tasks=tasks, task_weights=weights, baselines=baselines)
    assert config.baselines == []  # `none` turns every baseline off
    assert baselines == ["none"]
    config.tasks.append("slurp:intent")
    config.task_weights.append(2.0)
    assert tasks == ["snips:intent_slots", "20ng:topic"] and weights == [1.0, 3.0]


def test_derived_settings():
    config = MultitaskConfig(tasks=["snips:intent_slots", "20ng:topic"], task_weights=[1.0, 3.0])
    assert config.weights == {"snips:intent_slots": 1.0, "20ng:topic": 3.0}
    assert MultitaskConfig(tasks=["snips:intent"]).weights == {"snips:intent": 1.0}
    assert config.constrained and not MultitaskConfig(label_decoding="free").constrained
    assert config.quantization_mode == "4bit" and MultitaskConfig(quantization=False).quantization_mode is None
