"""toolkit.training.budget: equal-total step budgets for baseline models, tokens trained."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from toolkit.training.budget import baseline_steps, model_parts, split_step_budget, tokens_trained


def _splits():
    return [
        SimpleNamespace(name="20ng:topic", task="topic"),
        SimpleNamespace(name="snips:intent_slots", task="intent_slots"),
    ]


def test_model_parts_split_the_joint_task_in_two():
    assert model_parts(_splits()) == [
        ("20ng:topic", "topic", "20ng:topic"),
        ("snips:intent", "intent", "snips:intent_slots"),
        ("snips:slots", "slots", "snips:intent_slots"),
    ]


def test_split_step_budget_sums_exactly_and_gives_everyone_a_step():
    assert split_step_budget(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert split_step_budget(3, {"a": 100, "b": 1, "c": 1}) == {"a": 1, "b": 1, "c": 1}
    for total in range(3, 40):
        steps = split_step_budget(total, {"a": 0.5, "b": 0.25, "c": 0.25})
        assert sum(steps.values()) == total and min(steps.values()) >= 1
    with pytest.raises(ValueError, match="at least one step"):
        split_step_budget(2, {"a": 1, "b": 1, "c": 1})
    with pytest.raises(ValueError, match="positive mass"):
        split_step_budget(5, {"a": 0, "b": 0})


def test_baseline_steps_modes():
    """The equal-total variants make the baselines' steps sum to the multi-task model's."""
    assert baseline_steps("per_model", 60, _splits()) is None
    even = baseline_steps("split_evenly", 60, _splits())
    assert even == {"20ng:topic": 20, "snips:intent": 20, "snips:slots": 20}
    mix = baseline_steps("split_by_mixture", 60, _splits(), {"20ng:topic": 0.5, "snips:intent_slots": 0.5})
    assert mix == {"20ng:topic": 30, "snips:intent": 15, "snips:slots": 15}  # the joint share is halved
    with pytest.raises(ValueError, match="unknown baseline budget"):
        baseline_steps("double", 60, _splits())
    with pytest.raises(ValueError, match="mixture"):
        baseline_steps("split_by_mixture", 60, _splits())


def test_tokens_trained_counts_every_pass():
    assert tokens_trained([10, 20], 2) == 30  # one pass
    assert tokens_trained([10, 20], 6) == 90  # three passes (max_steps beyond the data)
    assert tokens_trained([], 5) == 0


def test_match_task_rows_gives_each_model_its_task_share_of_the_rows():
    splits = [
        SimpleNamespace(name="snips:intent_slots", task="intent_slots"),
        SimpleNamespace(name="20ng:topic", task="topic"),
    ]
    steps = baseline_steps("match_task_rows", 100, splits, {"snips:intent_slots": 0.6, "20ng:topic": 0.4})
    assert steps == {"snips:intent": 60, "snips:slots": 60, "20ng:topic": 40}
