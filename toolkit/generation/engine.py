"""The generation engine: work items → teacher (through the cache) → per-item outcomes.

One item (a dataset row) owns one or more :class:`GenerationRequest` s (e.g. LMCor: a greedy request and a
sampled one). :func:`run_generation`

1. looks every sample up in the :class:`~toolkit.generation.cache.GenerationCache` and plans requests only for the
   missing sample indices (k=5 after k=4 asks for sample 4 alone);
2. estimates the cost of the plan and raises :class:`BudgetExceededError` *before any call* when it exceeds
   ``max_cost`` (the estimate is an upper bound: prompt tokens + ``max_tokens`` per sample);
3. streams the plan through :meth:`Teacher.generate_each`, handing each completed request to the cache's
   group-commit writer at once (:meth:`GenerationCache.submit`, see :mod:`toolkit.generation.cache`) and reserving each
   request's estimated cost before it is sent, so that spending never crosses ``max_cost``: the run stops
   sending and finishes cleanly. The cache is flushed before the function returns *and* when it raises
   (Ctrl-C, a teacher bug, ...), so everything that completed is on disk;
4. returns an :class:`ItemOutcome` per item — complete, failed after retries (with error type / message /
   attempts, for the failures file), or pending (not sent because the budget ran out).

Acknowledged answers (what a ``kill -9`` cannot take back)
---------------------------------------------------------
An *answer* is the samples of one completed request. The engine **acknowledges** it when it counts it done:
its samples enter the progress bar and :attr:`GenerationProgress.samples_done`, its item enters
``items_done`` and :attr:`GenerationProgress.completed_items` when it was the item's last outstanding request,
and it counts in the item's outcome (``new_samples``, ``generations``). The engine acknowledges an answer only
*after the cache transaction holding its samples has committed*: the cache's writer thread calls back once per
group commit with the answers it committed. So every acknowledged answer is on disk, and a re-run after a kill
never asks the teacher for it again. Durability comes earlier than acknowledgement: the cache journals every
answer the moment :meth:`GenerationCache.submit` takes it (see :mod:`toolkit.generation.cache_journal`), so a
kill can lose only the requests in flight at the teacher; answers received but not yet acknowledged are
recovered from the journal when the cache is next opened. A failed request has nothing to store and is
acknowledged at once. Spending is not acknowledgement: an answer's cost counts against ``max_cost`` the moment
it arrives.

Progress (the tqdm bar, with ETA, and ``on_progress``) counts *samples*, not items: an item is complete only when
all its requests are, and a backend may finish every item's greedy request before any sampled one (the hf
teacher groups requests by sampling settings), so an item count would sit at 0% for most of the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from toolkit.generation.cache import GenerationCache, cache_keys
from toolkit.generation.items import (
    BudgetExceededError,
    GenerationProgress,
    GenerationSummary,
    ItemOutcome,
    WorkItem,
)
from toolkit.teachers.base import Generation, GenerationRequest, Teacher, TeacherError, Usage

logger = logging.getLogger(__name__)


@dataclass
class _Planned:
    item: int
    request: int
    first_index: int
    sub: GenerationRequest
    estimate: float
    keys: list[str]  # the cache keys of sub's samples (computed while planning; the hand-off reuses them)


def _missing_runs(found: Sequence[Generation | None]) -> list[tuple[int, int]]:
    """Contiguous ``(start, length)`` runs of missing sample indices."""
    runs: list[tuple[int, int]] = []
    for idx, gen in enumerate(found):
        if gen is not None:
            continue
        if runs and runs[-1][0] + runs[-1][1] == idx:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((idx, 1))
    return runs


def estimate_request_cost(teacher: Teacher, request: GenerationRequest) -> float:
    """Upper-bound cost of one request: estimated prompt tokens + ``max_tokens`` per sample."""
    return teacher.cost(Usage(teacher.estimate_prompt_tokens(request), request.max_tokens * request.n))


def _plan(
    items: Sequence[WorkItem], teacher: Teacher, cache: GenerationCache
) -> tuple[list[list[list[Generation | None]]], list[_Planned]]:
    """Cached samples per item/request, and sub-requests for every contiguous run of missing samples."""
    tid = teacher.id
    keys: list[str] = []
    for item in items:
        for req in item.requests:
            keys.extend(cache_keys(tid, req, range(req.n)))
    looked_up = cache.get_keys(keys)  # one query per 500 keys, not one per request
    found: list[list[list[Generation | None]]] = []
    plan: list[_Planned] = []
    pos = 0
    for j, item in enumerate(items):
        per_req = []
        for r, req in enumerate(item.requests):
            got = looked_up[pos : pos + req.n]
            req_keys = keys[pos : pos + req.n]
            pos += req.n
            per_req.append(got)
            for first, length in _missing_runs(got):
                sub = req.replace(n=length, sample_offset=req.sample_offset + first)
                estimate = estimate_request_cost(teacher, sub)
                plan.append(_Planned(j, r, first, sub, estimate, req_keys[first : first + length]))
        found.append(per_req)
    return found, plan


def plan_cost(items: Sequence[WorkItem], teacher: Teacher, cache: GenerationCache) -> dict[str, Any]:
    """What a run would send, without sending anything (``--dry_run``): counts and the cost upper bound."""
    found, plan = _plan(items, teacher, cache)
    return {
        "items": len(items),
        "cached_samples": sum(g is not None for per_req in found for got in per_req for g in got),
        "missing_samples": sum(p.sub.n for p in plan),
        "requests": len(plan),
        "estimated_cost_usd": sum(p.estimate for p in plan),
    }


def run_generation(
    items: Sequence[WorkItem],
    teacher: Teacher,
    cache: GenerationCache,
    *,
    max_cost: float | None = None,
    progress: bool = True,
    desc: str = "generate",
    on_progress: Callable[[GenerationProgress], None] | None = None,
) -> tuple[list[ItemOutcome], GenerationSummary]:
    """Generate every item's samples through the cache. See the module docstring for the guarantees.

    Args:
        progress: Show a tqdm bar over samples (rate and ETA), with items done and spend in its postfix.
        on_progress: Called with a :class:`GenerationProgress` after each acknowledgement: once per group commit
            for the answers it made durable (from the cache's writer thread; per answer for a ``":memory:"``
            cache) and once per failed request (from the teacher's thread). Calls never overlap. It must be quick
            and must not use the cache; an exception it raises stops the run (re-raised by this function).

    Raises:
        BudgetExceededError: the pre-run estimate exceeds ``max_cost`` (no request was sent).
        ValueError: duplicate item ids.
    """
    ids = [it.item_id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"duplicate item id {dup!r}: item ids must be unique within a run")
    start = time.perf_counter()
    tid = teacher.id
    summary = GenerationSummary(teacher_id=tid, items=len(items))
    # -- 1. plan against the cache ---------------------------------------------------------------------------
    found, plan = _plan(items, teacher, cache)
    outcomes = [
        ItemOutcome(item.item_id, cached_samples=sum(g is not None for got in found[j] for g in got))
        for j, item in enumerate(items)
    ]
    summary.cached_samples = sum(o.cached_samples for o in outcomes)
    summary.estimated_cost_usd = sum(p.estimate for p in plan)
    missing = sum(p.sub.n for p in plan)
    logger.info(
        "%s: %d items, %d cached samples, %d to generate in %d requests (estimated cost <= $%.4f)",
        desc,
        len(items),
        summary.cached_samples,
        missing,
        len(plan),
        summary.estimated_cost_usd,
    )
    if max_cost is not None and summary.estimated_cost_usd > max_cost:
        raise BudgetExceededError(summary.estimated_cost_usd, max_cost, missing)

    # -- 2. run the plan ------------------------------------------------------------------------------------
    remaining = [0] * len(items)
    for p in plan:
        remaining[p.item] += 1
    total_samples = summary.cached_samples + missing
    state = {"spent": 0.0, "reserved": 0.0, "prompt": 0, "completion": 0, "postfix_at": 0.0}
    state["items_done"] = sum(1 for c in remaining if c == 0)  # fully cached items are done already
    state["samples_done"] = summary.cached_samples
    bar = None
    if progress:
        bar = tqdm(total=total_samples, initial=summary.cached_samples, desc=desc, unit="sample", dynamic_ncols=True)
    # Acknowledgements arrive from the cache's writer thread (answers) and the teacher's thread (failures).
    ack_lock = threading.Lock()
    ack_errors: list[BaseException] = []  # raised by on_progress / the bar in the writer thread: re-raised here

    def finish(i: int, completed: list[str]) -> int:
        """Under ``ack_lock``: plan entry ``i`` is acknowledged; returns its sample count."""
        p = plan[i]
        remaining[p.item] -= 1
        if remaining[p.item] == 0:
            state["items_done"] += 1
            if outcomes[p.item].error is None:
                completed.append(outcomes[p.item].item_id)
        return p.sub.n

    def report(samples: int, completed: list[str]) -> None:
        """Under ``ack_lock``: advance the bar and tell ``on_progress``."""
        state["samples_done"] += samples  # a failed request is done too: the bar reaches 100%
        if bar is not None:
            bar.update(samples)
            now = time.monotonic()
            if now >= state["postfix_at"]:  # formatting the postfix per request is wasted work: ~2x per second
                state["postfix_at"] = now + 0.5
                tokens = state["prompt"] + state["completion"]
                bar.set_postfix_str(
                    f"items={state['items_done']}/{len(items)} tok={tokens:,} cost=${state['spent']:.4f}",
                    refresh=False,
                )
        if on_progress is not None:
            done = GenerationProgress(
                state["samples_done"], total_samples, state["items_done"], len(items), tuple(completed)
            )
            on_progress(done)

    def acknowledge(indices: list[int]) -> None:
        """The cache committed the answers of plan entries ``indices`` (one call per group commit)."""
        try:
            with ack_lock:
                completed: list[str] = []
                samples = 0
                for i in indices:
                    outcomes[plan[i].item].new_samples += plan[i].sub.n
                    samples += finish(i, completed)
                report(samples, completed)
        except BaseException as exc:  # noqa: BLE001 - the writer thread must go on committing; raised below
            ack_errors.append(exc)

    def admit(i: int) -> bool:
        if max_cost is not None:
            if state["spent"] + state["reserved"] + plan[i].estimate > max_cost:
                if summary.stopped_reason is None:
                    logger.warning("max_cost $%.4f reached: sending no further requests", max_cost)
                summary.stopped_reason = "max_cost"
                return False
            state["reserved"] += plan[i].estimate
        summary.requests_sent += 1
        return True

    def on_result(i: int, result: list[Generation] | BaseException) -> None:
        if ack_errors:
            raise ack_errors[0]
        p = plan[i]
        if max_cost is not None:
            state["reserved"] -= p.estimate
        if isinstance(result, BaseException):
            with ack_lock:
                outcome = outcomes[p.item]
                if outcome.error is None:
                    outcome.error = {
                        "item_id": outcome.item_id,
                        "request_index": p.request,
                        "error_type": getattr(result, "error_type", type(result).__name__),
                        "message": str(result)[:2000],
                        "attempts": getattr(result, "attempts", 1),
                    }
                report(finish(i, []), [])
            return
        got = found[p.item][p.request]
        p_tok = c_tok = 0
        for k, gen in enumerate(result):
            got[p.first_index + k] = gen
            p_tok += gen.usage.prompt_tokens
            c_tok += gen.usage.completion_tokens
        # Spend counts at once (the money is gone even if the process dies before the commit).
        state["prompt"] += p_tok
        state["completion"] += c_tok
        state["spent"] += teacher.cost(Usage(p_tok, c_tok))
        # Not under ack_lock: submit may wait for the writer (back-pressure), whose callback takes the lock.
        req = items[p.item].requests[p.request]
        cache.submit(tid, req, p.first_index, result, keys=p.keys, on_commit=acknowledge, token=i)

    try:
        try:
            if plan:
                teacher.generate_each([p.sub for p in plan], on_result, admit)
        except BaseException:
            # Keep everything that completed before the error (Ctrl-C, a bug): commit it, then re-raise.
            try:
                cache.flush()
            except Exception:  # noqa: BLE001 - the original error is the one to report
                logger.exception("%s: flushing the generation cache after an error failed", desc)
            raise
        cache.flush()  # everything completed is committed *and acknowledged* when run_generation returns
    finally:
        if bar is not None:
            bar.close()
    if ack_errors:
        raise ack_errors[0]

    # -- 3. assemble ----------------------------------------------------------------------------------------
    for j, outcome in enumerate(outcomes):
        complete = all(g is not None for got in found[j] for g in got)
        if complete:
            outcome.generations = [list(got) for got in found[j]]
            outcome.error = None  # a later request of the item may have failed after an earlier retry: moot
            summary.completed += 1
        elif outcome.error is not None:
            summary.failed += 1
        else:
            summary.pending += 1
    summary.new_samples = sum(o.new_samples for o in outcomes)
    summary.prompt_tokens = state["prompt"]
    summary.completion_tokens = state["completion"]
    summary.cost_usd = state["spent"]
    summary.elapsed_s = time.perf_counter() - start
    logger.info(
        "%s: %d complete, %d failed, %d pending; %d requests sent, %d new / %d cached samples, $%.4f, %.1fs",
        desc,
        summary.completed,
        summary.failed,
        summary.pending,
        summary.requests_sent,
        summary.new_samples,
        summary.cached_samples,
        summary.cost_usd,
        summary.elapsed_s,
    )
    return outcomes, summary


__all__ = [
    "BudgetExceededError",
    "GenerationProgress",
    "GenerationSummary",
    "ItemOutcome",
    "TeacherError",
    "WorkItem",
    "estimate_request_cost",
    "plan_cost",
    "run_generation",
]
