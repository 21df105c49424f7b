"""Task mixtures of the multi-task recipe: sampling probabilities per task and the seeded mixed training set.

- :func:`mixture_probabilities`: weighted, proportional or temperature sampling over tasks;
- :func:`sample_mixture`: draws the rows (multinomial task counts, seeded permutations within a task);
- :func:`build_mixture`: the prompt-completion training set of one model (as many rows as its step budget needs),
  :func:`dev_rows`: the dev rows of its loss curve.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import concatenate_datasets

from toolkit.methods.multitask.data import TaskSplits
from toolkit.methods.multitask.formats import to_prompt_completion

logger = logging.getLogger(__name__)

MIXTURE_STRATEGIES = ("weighted", "proportional", "temperature")

__all__ = [
    "MIXTURE_STRATEGIES",
    "build_mixture",
    "dev_rows",
    "drawn_rows",
    "mixture_probabilities",
    "rows_per_step",
    "sample_mixture",
]


def mixture_probabilities(
    sizes: Mapping[str, int],
    weights: Mapping[str, float] | None = None,
    strategy: str = "weighted",
    temperature: float = 1.0,
) -> dict[str, float]:
    """Sampling probability per task.

    - ``weighted``: ``p_i ∝ w_i`` (weights from the YAML; all 1 → uniform over tasks).
    - ``proportional``: ``p_i ∝ w_i · n_i`` (examples-proportional; big tasks dominate).
    - ``temperature``: ``p_i ∝ (w_i · n_i)^(1/T)`` (T=1 is proportional, T→∞ uniform; T5/mT5-style).

    Raises:
        ValueError: on an unknown strategy, non-positive temperature, negative weight, empty or zero-mass mixture.
    """
    if strategy not in MIXTURE_STRATEGIES:
        raise ValueError(f"unknown mixture strategy {strategy!r}; expected one of {MIXTURE_STRATEGIES}")
    if not sizes:
        raise ValueError("empty task mixture")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    weights = dict(weights or {})
    unknown = set(weights) - set(sizes)
    if unknown:
        raise ValueError(f"weights given for tasks not in the mixture: {sorted(unknown)}")
    mass = {}
    for name, n in sizes.items():
        w = float(weights.get(name, 1.0))
        if w < 0 or n < 0:
            raise ValueError(f"task {name!r}: negative weight or size ({w}, {n})")
        if strategy == "weighted":
            mass[name] = w
        elif strategy == "proportional":
            mass[name] = w * n
        else:
            mass[name] = (w * n) ** (1.0 / temperature) if w * n > 0 else 0.0
    total = sum(mass.values())
    if total <= 0 or not math.isfinite(total):
        raise ValueError(f"task mixture has no mass: {mass}")
    return {name: m / total for name, m in mass.items()}


def sample_mixture(datasets: Mapping[str, Any], probabilities: Mapping[str, float], num_samples: int, seed: int = 42):
    """Draw ``num_samples`` rows from several datasets with the given task probabilities (seeded).

    Task counts are multinomial draws; within a task, rows are taken from a seeded permutation, cycling through
    fresh permutations when a task is drawn more often than it has rows (epochs over small tasks). The result is
    shuffled and gets a ``task`` column with the mixture key and a ``row`` column with the row's index in its task's
    dataset (:func:`drawn_rows` reads them back, so a single-task baseline can train on exactly these rows).

    Args:
        datasets: ``{task_name: datasets.Dataset}`` sharing the same columns (e.g. ``prompt``, ``completion``).
        probabilities: ``{task_name: p}`` from :func:`mixture_probabilities`.
        num_samples: Total rows to draw.
        seed: RNG seed.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    names = list(datasets)
    if set(names) != set(probabilities):
        raise ValueError(f"datasets {sorted(names)} and probabilities {sorted(probabilities)} name different tasks")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(num_samples, [probabilities[n] for n in names])
    parts = []
    for name, count in zip(names, counts):
        ds = datasets[name]
        if count == 0:
            continue
        if len(ds) == 0:
            raise ValueError(f"task {name!r} has no rows but was drawn {count} times")
        idx: list[int] = []
        while len(idx) < count:
            idx.extend(rng.permutation(len(ds)).tolist())
        part = ds.select(idx[:count])
        if "task" not in part.column_names:
            part = part.add_column("task", [name] * count)
        parts.append(part.add_column("row", idx[:count]) if "row" not in part.column_names else part)
    mixed = concatenate_datasets(parts)
    logger.info("Task mixture: %s", dict(zip(names, counts.tolist())))
    return mixed.shuffle(seed=seed)


def drawn_rows(mixture) -> dict[str, list[int]]:
    """``{task: [row index, ...]}``: the rows of each task a :func:`sample_mixture` draw holds, in training order."""
    rows: dict[str, list[int]] = {}
    for task, row in zip(mixture["task"], mixture["row"]):
        rows.setdefault(task, []).append(row)
    return rows


def rows_per_step(args) -> int:
    """Training rows one optimizer step consumes: batch size x accumulation x processes."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)


def build_mixture(
    splits: Sequence[TaskSplits],
    weights: Mapping[str, float],
    args,
    *,
    strategy: str = "weighted",
    temperature: float = 1.0,
    use_chat: bool = True,
    max_listed_labels: int = 10,
) -> tuple[Any, dict[str, Any]]:
    """The training rows of one model over ``splits``: as many as ``args.max_steps`` consumes, else one pass.

    Args:
        splits: The model's tasks (their ``train`` rows).
        weights: ``{spec: weight}`` (``spec`` as in the YAML's ``tasks``; missing = 1).
        args: The model's ``SFTConfig`` (steps, batch size, accumulation, world size, seed).
        strategy, temperature: See :func:`mixture_probabilities`.
        use_chat: Conversational prompt-completion rows (the tokenizer has a chat template).
        max_listed_labels: Label sets up to this size are listed in the prompt (:func:`~.formats.build_prompt`).

    Returns:
        ``(rows, {"mixture": {task: p}, "mixture_counts": {task: rows drawn}, "mixture_rows": {task: [row index]}})``;
        ``mixture_rows`` lists the drawn rows of each task (indices into its ``train`` split), in training order.
    """
    datasets = {sp.name: to_prompt_completion(sp, sp.train, use_chat, max_listed_labels) for sp in splits}
    probs = mixture_probabilities(
        {k: len(v) for k, v in datasets.items()},
        {sp.name: weights.get(sp.spec, 1.0) for sp in splits},
        strategy,
        temperature,
    )
    steps = args.max_steps if args.max_steps > 0 else 0
    n = steps * rows_per_step(args)
    mixture = sample_mixture(datasets, probs, n or sum(len(d) for d in datasets.values()), seed=args.seed)
    drawn = drawn_rows(mixture)
    counts = {task: len(drawn.get(task, [])) for task in datasets}
    return mixture, {"mixture": probs, "mixture_counts": counts, "mixture_rows": drawn}


def dev_rows(splits: Sequence[TaskSplits], n: int, use_chat: bool = True, max_listed_labels: int = 10):
    """The first ``n`` dev rows of every task as prompt-completion rows (the dev-loss curve)."""
    parts = [
        to_prompt_completion(sp, sp.dev.select(range(min(n, len(sp.dev)))), use_chat, max_listed_labels)
        for sp in splits
    ]
    return concatenate_datasets(parts)
