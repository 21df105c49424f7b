"""One multi-process pattern for every recipe: shard work across ranks, gather it back in order.

Under DDP every rank holds the whole model, so rank 0 *could* evaluate alone; under FSDP and DeepSpeed ZeRO-3 a
forward pass all-gathers parameters from every rank, so a rank that evaluates while the others wait deadlocks. The
one safe pattern, and the fast one, is to give each rank an equal share of the rows, run the same number of forward
passes everywhere, and gather the outputs. :func:`map_sharded` does exactly that on Accelerate's own tools
(``split_between_processes`` with padding, ``gather_object``), restores the input order and drops the padding, so no
row is duplicated or dropped. With one process it is a plain call.

Artifacts are written, and baselines trained, on the main process only (:func:`is_main_process`); the other ranks
wait at :func:`wait_for_everyone` so nobody exits while a collective is still pending.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from accelerate import PartialState
from accelerate.utils import gather_object

__all__ = ["is_main_process", "map_sharded", "num_processes", "wait_for_everyone"]

Row = TypeVar("Row")


def num_processes() -> int:
    """How many processes this run has (1 outside ``accelerate launch`` / ``torchrun``)."""
    return PartialState().num_processes


def is_main_process() -> bool:
    """True on the global main process (the one that writes artifacts and pushes)."""
    return PartialState().is_main_process


def wait_for_everyone() -> None:
    """Barrier across every process (a no-op with one process)."""
    PartialState().wait_for_everyone()


def map_sharded(fn: Callable[[list[Row]], Sequence[Any]], rows: Sequence[Row]) -> list[Any]:
    """Run ``fn`` on this rank's share of ``rows`` and return every rank's outputs, in ``rows``' order, on every rank.

    Each rank gets a contiguous, equally long share: the last share is padded by repeating its last row, so every rank
    makes the same number of forward passes (FSDP / ZeRO-3 need that) and generates with the same batch boundaries as
    the others. Padding outputs are dropped after the gather.

    Args:
        fn: Maps a list of rows to one output per row (same length, same order), e.g. a batched generate.
        rows: The rows to process; every rank must pass the same rows.

    Returns:
        ``[fn-output for row in rows]``, identical on every rank.

    Raises:
        ValueError: ``fn`` returned a different number of outputs than rows it was given.
    """
    rows = list(rows)
    state = PartialState()
    if state.num_processes == 1 or not rows:
        return _checked(fn, rows)
    indexed = list(enumerate(rows))
    with state.split_between_processes(indexed, apply_padding=True) as share:
        outputs = _checked(fn, [row for _, row in share])
        pairs = [(index, output) for (index, _), output in zip(share, outputs)]
    by_index: dict[int, Any] = {}
    for index, output in gather_object(pairs):
        by_index.setdefault(index, output)  # padding repeats an index: keep the first
    missing = [i for i in range(len(rows)) if i not in by_index]
    if missing:
        raise RuntimeError(f"map_sharded lost rows {missing[:10]} in the gather ({len(missing)} in all)")
    return [by_index[i] for i in range(len(rows))]


def _checked(fn: Callable[[list[Row]], Sequence[Any]], rows: list[Row]) -> list[Any]:
    outputs = list(fn(rows))
    if len(outputs) != len(rows):
        raise ValueError(f"the mapped function returned {len(outputs)} outputs for {len(rows)} rows")
    return outputs
