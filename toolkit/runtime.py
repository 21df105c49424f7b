"""Use the whole machine: torch intra-op threads = the cores this process may use.

Two launchers get this wrong on CPU. ``accelerate launch`` (1.15) exports ``OMP_NUM_THREADS=1`` to its child
unless given ``--num_cpu_threads_per_process``, so ``accelerate launch recipes/x.py`` trains on one core of
many; and a Makefile or CI that exports ``OMP_NUM_THREADS=1`` for its tests leaks it into every run. Recipes,
data-gen jobs and benchmarks call :func:`configure_threads` first; the rule it applies:

1. an explicit ``num_threads`` argument, else ``TOOLKIT_NUM_THREADS`` — the user's own choice, always kept;
2. else, when the process was started by ``accelerate launch``, the launcher's ``OMP_NUM_THREADS`` is its own
   default, not the user's: use ``cores // processes on this node`` (2 DDP processes on 2 cores: 1 each);
3. else ``OMP_NUM_THREADS`` when set (a plain ``python`` run honours the user's environment);
4. else every core this process may use, divided among the processes on this node.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

#: Set by both of accelerate's launchers (simple and multi-process) in the child's environment.
_ACCELERATE_MARKER = "ACCELERATE_DYNAMO_BACKEND"


def available_cores() -> int:
    """Cores this process may run on (CPU affinity / cgroup-pinned set), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def _positive_int(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        count = int(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not an integer") from exc
    if count < 1:
        raise ValueError(f"{name}={value!r} must be >= 1")
    return count


def resolve_num_threads(
    num_threads: int | None = None, env: Mapping[str, str] | None = None, cores: int | None = None
) -> tuple[int, str]:
    """Decide the intra-op thread count without changing anything (see the module docstring).

    Args:
        num_threads: Explicit choice (e.g. a ``--num_threads`` flag); wins over everything.
        env: Environment to read (default ``os.environ``).
        cores: Cores available (default :func:`available_cores`).

    Returns:
        ``(threads, reason)``; the reason is logged so a run says why it used what it used.
    """
    env = os.environ if env is None else env
    cores = available_cores() if cores is None else cores
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        return num_threads, "num_threads argument"
    explicit = _positive_int(env.get("TOOLKIT_NUM_THREADS"), "TOOLKIT_NUM_THREADS")
    if explicit is not None:
        return explicit, "TOOLKIT_NUM_THREADS"
    local_procs = _positive_int(env.get("LOCAL_WORLD_SIZE"), "LOCAL_WORLD_SIZE") or 1
    share = max(1, cores // local_procs)
    if _ACCELERATE_MARKER in env:
        return share, f"accelerate launch: {cores} cores / {local_procs} process(es) on this node"
    omp = _positive_int(env.get("OMP_NUM_THREADS"), "OMP_NUM_THREADS")
    if omp is not None:
        return omp, "OMP_NUM_THREADS"
    return share, f"{cores} cores / {local_procs} process(es) on this node"


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads (and ``OMP_NUM_THREADS`` for libraries that read it later).

    Call it at the start of a run, before the first torch op. Returns the thread count used.
    """
    threads, reason = resolve_num_threads(num_threads)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    logger.info("torch intra-op threads: %d (%s)", threads, reason)
    return threads


def cache_dir() -> Path:
    """Root of the toolkit's cache (converted models, generation caches, embeddings): ``$TOOLKIT_CACHE`` or
    ``~/.cache/distill-toolkit``."""
    env = os.environ.get("TOOLKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "distill-toolkit"
