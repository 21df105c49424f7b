"""toolkit.training.budget: equal-total step budgets for baseline models, tokens trained, CPU-seconds."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from toolkit.training import budget as tb


def _splits():
    return [
        SimpleNamespace(name="20ng:topic", task="topic"),
        SimpleNamespace(name="snips:intent_slots", task="intent_slots"),
    ]


def test_model_parts_split_the_joint_task_in_two():
    assert tb.model_parts(_splits()) == [
        ("20ng:topic", "topic", "20ng:topic"),
        ("snips:intent", "intent", "snips:intent_slots"),
        ("snips:slots", "slots", "snips:intent_slots"),
    ]


def test_split_step_budget_sums_exactly_and_gives_everyone_a_step():
    assert tb.split_step_budget(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert tb.split_step_budget(3, {"a": 100, "b": 1, "c": 1}) == {"a": 1, "b": 1, "c": 1}
    for total in range(3, 40):
        steps = tb.split_step_budget(total, {"a": 0.5, "b": 0.25, "c": 0.25})
        assert sum(steps.values()) == total and min(steps.values()) >= 1
    with pytest.raises(ValueError, match="at least one step"):
        tb.split_step_budget(2, {"a": 1, "b": 1, "c": 1})
    with pytest.raises(ValueError, match="positive mass"):
        tb.split_step_budget(5, {"a": 0, "b": 0})


def test_baseline_steps_modes():
    """Issue 12 item 16: the equal-total variant makes the baselines' steps sum to the multi-task model's."""
    assert tb.baseline_steps("per_model", 60, _splits()) is None
    even = tb.baseline_steps("split_evenly", 60, _splits())
    assert even == {"20ng:topic": 20, "snips:intent": 20, "snips:slots": 20}
    mix = tb.baseline_steps("split_by_mixture", 60, _splits(), {"20ng:topic": 0.5, "snips:intent_slots": 0.5})
    assert mix == {"20ng:topic": 30, "snips:intent": 15, "snips:slots": 15}  # the joint share is halved
    with pytest.raises(ValueError, match="unknown baseline budget"):
        tb.baseline_steps("double", 60, _splits())
    with pytest.raises(ValueError, match="mixture"):
        tb.baseline_steps("split_by_mixture", 60, _splits())


def test_tokens_trained_and_meter():
    assert tb.tokens_trained([10, 20], 2) == 30  # one pass
    assert tb.tokens_trained([10, 20], 6) == 90  # three passes (max_steps beyond the data)
    assert tb.tokens_trained([], 5) == 0
    with tb.ComputeMeter() as meter:
        sum(i * i for i in range(200_000))
    assert meter.cpu_s > 0 and meter.wall_s > 0


def test_match_task_rows_gives_each_model_its_task_share_of_the_rows():
    from types import SimpleNamespace

    from toolkit.training.budget import baseline_steps

    splits = [
        SimpleNamespace(name="snips:intent_slots", task="intent_slots"),
        SimpleNamespace(name="20ng:topic", task="topic"),
    ]
    steps = baseline_steps("match_task_rows", 100, splits, {"snips:intent_slots": 0.6, "20ng:topic": 0.4})
    assert steps == {"snips:intent": 60, "snips:slots": 60, "20ng:topic": 40}
