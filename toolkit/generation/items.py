"""What the generation engine consumes and returns: work items, per-item outcomes, the run summary, progress."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from toolkit.teachers.base import Generation, GenerationRequest, Usage

__all__ = ["BudgetExceededError", "GenerationProgress", "GenerationSummary", "ItemOutcome", "WorkItem"]


class BudgetExceededError(RuntimeError):
    """The pre-run cost estimate exceeds ``max_cost``; nothing was sent."""

    def __init__(self, estimate: float, max_cost: float, missing_samples: int):
        super().__init__(
            f"estimated cost ${estimate:.4f} for {missing_samples} uncached samples exceeds max_cost ${max_cost:.4f}; "
            "nothing was sent (raise --max_cost, lower max_tokens or the number of items)"
        )
        self.estimate = estimate
        self.max_cost = max_cost
        self.missing_samples = missing_samples


@dataclass
class WorkItem:
    """One dataset row's requests. ``item_id`` must be unique within a run."""

    item_id: str
    requests: list[GenerationRequest]


@dataclass
class ItemOutcome:
    """Per-item result: ``generations[r]`` holds request r's n samples when the item is complete."""

    item_id: str
    generations: list[list[Generation]] | None = None
    error: dict[str, Any] | None = None
    cached_samples: int = 0
    new_samples: int = 0

    @property
    def ok(self) -> bool:
        return self.generations is not None

    @property
    def usage(self) -> Usage:
        total = Usage()
        for gens in self.generations or []:
            for gen in gens:
                total = total + gen.usage
        return total


@dataclass
class GenerationSummary:
    """What a run did; ``cost_usd`` / ``usage`` count only new (paid) samples."""

    teacher_id: str
    items: int = 0
    completed: int = 0
    failed: int = 0
    pending: int = 0
    requests_sent: int = 0
    cached_samples: int = 0
    new_samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    estimated_cost_usd: float = 0.0
    elapsed_s: float = 0.0
    stopped_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def items_per_s(self) -> float:
        return self.items / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["items_per_s"] = round(self.items_per_s, 3)
        data["cost_usd"] = round(self.cost_usd, 6)
        data["estimated_cost_usd"] = round(self.estimated_cost_usd, 6)
        return data


@dataclass
class GenerationProgress:
    """Where a run stands, passed to ``on_progress`` after every acknowledgement (see the module docstring).

    Attributes:
        samples_done: Acknowledged samples, cached ones included (failed requests count as done too).
        items_done: Items with no request outstanding (complete or failed), fully cached ones included.
        completed_items: Ids of the items that became complete (every sample on disk) since the previous call.
    """

    samples_done: int
    samples_total: int
    items_done: int
    items_total: int
    completed_items: tuple[str, ...] = ()
