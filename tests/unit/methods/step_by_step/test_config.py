"""StepByStepConfig: every knob checked at construction, the implicit sources filled, the label prefix per mode."""

from __future__ import annotations

import dataclasses

import pytest

from toolkit.methods.step_by_step.config import StepByStepConfig, label_prefix_for


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mode": "cot"}, "mode"),
        ({"label_source": "palm"}, "label_source"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"max_rationale_length": 0}, "max_rationale_length"),
        ({"generation_batch_size": 0}, "generation_batch_size"),
        ({"task": "gsm8k"}, "task"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"train_fraction": 1.5}, "train_fraction"),
        ({"dev_size": 0}, "dev_size"),
    ],
)
def test_bad_values_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        StepByStepConfig(**values)


def test_sources_default_to_the_tasks_palm_data_and_official_files_win():
    config = StepByStepConfig(task="cqa")
    assert (config.train_source, config.test_source, config.eval_source) == ("palm:cqa", "palm:cqa", None)
    official = StepByStepConfig(task="cqa", test_source="palm:cqa", test_path="t.jsonl", dev_path="d.jsonl")
    assert (official.test_source, official.eval_source) == ("t.jsonl", "d.jsonl")
    # Filling the defaults is idempotent: a copy with another mode keeps the same sources.
    copy = dataclasses.replace(official, mode="standard")
    assert (copy.test_source, copy.eval_source, copy.train_source) == ("t.jsonl", "d.jsonl", "palm:cqa")


def test_label_prefix_follows_the_mode_unless_given():
    assert label_prefix_for("standard") == "" and label_prefix_for("task_prefix") == "predict: "
    assert StepByStepConfig(mode="standard").label_task_prefix == ""
    assert StepByStepConfig(mode="task_prefix").label_task_prefix == "predict: "
    assert StepByStepConfig(mode="standard", label_prefix="q: ").label_task_prefix == "q: "
    # The prefix is derived, never stored: switching the mode of a copy switches the prefix.
    assert dataclasses.replace(StepByStepConfig(mode="task_prefix"), mode="standard").label_task_prefix == ""


def test_alpha_applies_only_with_rationales():
    assert StepByStepConfig(mode="task_prefix", alpha=0.3).effective_alpha == 0.3
    assert StepByStepConfig(mode="standard", alpha=0.3).effective_alpha == 1.0
