"""Training compute: count the tokens trained and split one step budget across baseline models.

A multi-task model is one run; its single-task baselines are one run *per task* (two for a joint intent + slots
task, the paper's two-model setup). Giving every baseline model the multi-task model's full step budget makes the
baselines together cost 2-3× as much, so every results row reports what it cost, and
:func:`baseline_steps` offers the equal-total-budget alternative:

- ``per_model``: every baseline model trains the full budget (the setting of most papers, including Zhao et al.);
- ``split_by_mixture``: the baseline models share the multi-task model's *total* steps in proportion to its task
  mixture (a joint task's share is halved between its intent model and its slot model);
- ``split_evenly``: the models share the total steps evenly;
- ``match_task_rows``: equal *per-task* budget: every baseline model trains as many rows of its task as the
  multi-task model saw of that task (mixture share × steps; both models of a joint task get the full share, so the
  family costs more than the multi-task model when there is a joint task). The single-task LoRA baselines go
  further and replay the multi-task model's own draw (:mod:`toolkit.baselines.multitask`): the very rows, as often,
  for the steps they fill; the steps here are the expected counts the encoder baselines train.

In both split modes the steps of all baseline models of one family sum exactly to the multi-task model's steps
(largest-remainder rounding, at least one step each).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

BASELINE_BUDGETS = ("per_model", "split_by_mixture", "split_evenly", "match_task_rows")

__all__ = ["BASELINE_BUDGETS", "baseline_steps", "model_parts", "split_step_budget", "tokens_trained"]


def tokens_trained(lengths: Sequence[int], rows_seen: int) -> int:
    """Non-padding tokens the trainer pushed through: mean row length × rows actually seen.

    ``rows_seen`` = optimizer steps × batch size × accumulation × processes; with ``max_steps`` a trainer may see
    more or fewer rows than one pass over ``lengths``.
    """
    if not lengths:
        return 0
    return round(sum(lengths) * rows_seen / len(lengths))


def model_parts(splits: Sequence[Any]) -> list[tuple[str, str, str]]:
    """``(model_name, task, entry_name)`` for each single-task baseline model of a mixture.

    A joint ``intent_slots`` entry ``snips:intent_slots`` becomes two models, ``snips:intent`` and ``snips:slots``.
    """
    parts = []
    for entry in splits:
        if entry.task == "intent_slots":
            source = entry.name.rsplit(":", 1)[0]
            parts += [(f"{source}:intent", "intent", entry.name), (f"{source}:slots", "slots", entry.name)]
        else:
            parts.append((entry.name, entry.task, entry.name))
    return parts


def split_step_budget(total_steps: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Split ``total_steps`` into integers proportional to ``shares`` that sum exactly to ``total_steps``.

    Largest-remainder rounding (ties broken by order), every model at least one step.

    Raises:
        ValueError: fewer steps than models, or shares that are negative / all zero.
    """
    if not shares:
        raise ValueError("no models to split the budget over")
    if total_steps < len(shares):
        raise ValueError(f"{total_steps} steps cannot give each of {len(shares)} models at least one step")
    mass = sum(shares.values())
    if any(s < 0 for s in shares.values()) or mass <= 0 or not math.isfinite(mass):
        raise ValueError(f"shares must be non-negative with positive mass: {dict(shares)}")
    names = list(shares)
    # One step each first, the rest by share: no model is left untrained.
    spare = total_steps - len(names)
    exact = {n: spare * shares[n] / mass for n in names}
    steps = {n: 1 + math.floor(exact[n]) for n in names}
    left = total_steps - sum(steps.values())
    largest_remainders = sorted(names, key=lambda n: (-(exact[n] - math.floor(exact[n])), names.index(n)))
    for name in largest_remainders[:left]:
        steps[name] += 1
    return steps


def baseline_steps(
    mode: str, total_steps: int, splits: Sequence[Any], mixture: Mapping[str, float] | None = None
) -> dict[str, int] | None:
    """Steps per baseline model (keyed by :func:`model_parts` names), or ``None`` for ``per_model``.

    Args:
        mode: One of :data:`BASELINE_BUDGETS`.
        total_steps: The multi-task model's optimizer steps.
        splits: The mixture entries (objects with ``name`` and ``task``).
        mixture: ``{entry_name: probability}`` of the multi-task model (needed for ``split_by_mixture``).
    """
    if mode not in BASELINE_BUDGETS:
        raise ValueError(f"unknown baseline budget {mode!r}; expected one of {BASELINE_BUDGETS}")
    if mode == "per_model":
        return None
    parts = model_parts(splits)
    if mode == "split_evenly":
        return split_step_budget(total_steps, {name: 1.0 for name, _, _ in parts})
    if mixture is None:
        raise ValueError(f"{mode} needs the multi-task mixture probabilities")
    if mode == "match_task_rows":
        return {name: max(1, round(total_steps * mixture[entry])) for name, _, entry in parts}
    per_entry = {entry: sum(e == entry for _, _, e in parts) for _, _, entry in parts}
    return split_step_budget(total_steps, {name: mixture[entry] / per_entry[entry] for name, _, entry in parts})
