"""toolkit.methods.multitask.mixture: task probabilities, seeded sampling, one model's training rows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from datasets import Dataset

from toolkit.methods.multitask import mixture
from toolkit.methods.multitask.data import TaskSplits

# ---------------------------------------------------------------------------------------------------- mixture


def test_mixture_probabilities():
    sizes = {"a": 300, "b": 100}
    assert mixture.mixture_probabilities(sizes) == {"a": 0.5, "b": 0.5}
    assert mixture.mixture_probabilities(sizes, {"a": 3, "b": 1}) == {"a": 0.75, "b": 0.25}
    assert mixture.mixture_probabilities(sizes, strategy="proportional") == {"a": 0.75, "b": 0.25}
    p = mixture.mixture_probabilities(sizes, strategy="temperature", temperature=2.0)
    assert p["a"] == pytest.approx(300**0.5 / (300**0.5 + 100**0.5))
    for bad in ({"strategy": "nope"}, {"strategy": "temperature", "temperature": 0}, {"weights": {"c": 1}}):
        with pytest.raises(ValueError):
            mixture.mixture_probabilities(sizes, **bad)
    with pytest.raises(ValueError, match="no mass"):
        mixture.mixture_probabilities(sizes, {"a": 0, "b": 0})


def test_sample_mixture_proportions_and_seed():
    a = Dataset.from_dict({"prompt": [f"a{i}" for i in range(50)], "completion": ["x"] * 50})
    b = Dataset.from_dict({"prompt": [f"b{i}" for i in range(10)], "completion": ["y"] * 10})
    mixed = mixture.sample_mixture({"a": a, "b": b}, {"a": 0.75, "b": 0.25}, 4000, seed=1)
    share = mixed["task"].count("a") / len(mixed)
    assert len(mixed) == 4000 and abs(share - 0.75) < 0.03
    # b has 10 rows but is drawn ~1000 times: it cycles through full permutations, so counts stay balanced.
    counts = {p: mixed["prompt"].count(p) for p in b["prompt"]}
    assert max(counts.values()) - min(counts.values()) <= 1
    again = mixture.sample_mixture({"a": a, "b": b}, {"a": 0.75, "b": 0.25}, 4000, seed=1)
    other = mixture.sample_mixture({"a": a, "b": b}, {"a": 0.75, "b": 0.25}, 4000, seed=2)
    assert again["prompt"] == mixed["prompt"] and other["prompt"] != mixed["prompt"]
    with pytest.raises(ValueError, match="different tasks"):
        mixture.sample_mixture({"a": a}, {"a": 0.5, "b": 0.5}, 10)


def _topic_split(n_labels: int) -> TaskSplits:
    labels = [f"label{i}" for i in range(n_labels)]
    train = Dataset.from_dict(
        {"text": [f"text {i}" for i in range(8)], "label": [labels[i % n_labels] for i in range(8)]}
    )
    return TaskSplits("news:topic", "news", "topic", train, train, labels, spec="news:topic")


def test_build_mixture_draws_the_step_budget_and_lists_labels_as_asked():
    split = _topic_split(3)
    args = SimpleNamespace(
        max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=2, world_size=1, seed=0
    )
    rows, info = mixture.build_mixture([split], {}, args, use_chat=False)
    assert len(rows) == 12 and info["mixture_counts"] == {"news:topic": 12}
    # the draw is recorded row by row, in training order: 12 rows of an 8-row task, every row at least once
    drawn = info["mixture_rows"]["news:topic"]
    assert len(drawn) == 12 and sorted(set(drawn)) == list(range(8))
    assert all(
        prompt.rstrip().endswith(f"Text: {split.train[index]['text']}") for index, prompt in zip(drawn, rows["prompt"])
    )
    assert "Topics:" in rows[0]["prompt"]
    unlisted, _ = mixture.build_mixture([split], {}, args, use_chat=False, max_listed_labels=2)
    assert "Topics:" not in unlisted[0]["prompt"]
    # Two processes with half the per-device batch draw the same rows in the same order: the same global batch.
    halved = SimpleNamespace(**{**vars(args), "per_device_train_batch_size": 1, "world_size": 2})
    assert mixture.build_mixture([split], {}, halved, use_chat=False)[0]["prompt"] == rows["prompt"]
