"""Data-parallel decoding for the local teacher on CPU: one process per core, each with its own model copy.

A small teacher's decode step is a handful of [batch x 576] matmuls plus Python overhead per token: torch's
intra-op threads barely help there (the demo's teacher ran at ~1.3 of 2 cores). Batches are independent, so
processes scale where threads do not. Each worker loads the model once and runs whole batches through the same
``HFTeacher.generate_batch`` (same grouping, padding, prefix reuse and per-batch seeds as in-process), and the
parent hands results to the engine's callback in its own thread as batches finish.

How many workers (:func:`plan_workers`): the torch threads this process was given (``configure_threads``), at
most one per batch, and only as many model copies as fit in half the available memory; the threads are divided
among them. One worker means no pool.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict

import torch

from toolkit.teachers.base import TeacherError
from toolkit.teachers.config import TeacherConfig

logger = logging.getLogger(__name__)

__all__ = ["available_memory_bytes", "generate_batches_in_pool", "plan_workers"]

_WORKER = None  # the worker process's HFTeacher


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (``None`` where there is none)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def plan_workers(threads: int, n_batches: int, model_bytes: int, free_bytes: int | None) -> tuple[int, int]:
    """``(workers, threads_per_worker)`` for ``n_batches`` batches on ``threads`` threads (see module docstring)."""
    workers = max(1, min(threads, n_batches))
    if free_bytes is not None and model_bytes > 0:
        workers = max(1, min(workers, int(0.5 * free_bytes // model_bytes)))
    return workers, max(1, threads // workers)


def _init_worker(teacher_class: type, config: dict, threads: int) -> None:
    # The teacher class travels pickled (by reference): this module never imports the hf teacher module.
    torch.set_num_threads(threads)
    global _WORKER
    _WORKER = teacher_class(TeacherConfig(**config)).load()


def _run_batch(reqs, ids, job_prefix):
    _WORKER.job_prefix = job_prefix
    try:
        return "ok", _WORKER.generate_batch(reqs, ids)
    except Exception as exc:  # noqa: BLE001 - sent back and recorded per request by the parent
        return "error", (f"{type(exc).__name__}: {exc}", type(exc).__name__)


def generate_batches_in_pool(teacher, batches, requests, encoded, on_result, admit, workers: int, threads: int):
    """Run ``batches`` (lists of request indices) on ``workers`` processes; ``on_result(i, result)`` per request.

    ``admit(i)`` is asked in batch order before a batch is sent, as in-process: the first refusal stops sending.
    """
    config = asdict(teacher.config) | {"workers": 1}
    ctx = mp.get_context("spawn")  # fork would copy a torch runtime with live threads
    logger.info("hf teacher: %d worker processes x %d threads for %d batches", workers, threads, len(batches))
    env_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the children's OpenMP pool, before torch loads there
    try:
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(type(teacher), config, threads)
        ) as pool:
            pending, stopped = {}, False
            queue = iter(batches)
            while True:
                while not stopped and len(pending) < 2 * workers:  # keep every worker fed, not the whole job queued
                    batch = next(queue, None)
                    if batch is None:
                        break
                    admitted = []
                    for i in batch:
                        if admit is not None and not admit(i):
                            stopped = True
                            break
                        admitted.append(i)
                    if admitted:
                        future = pool.submit(
                            _run_batch,
                            [requests[i] for i in admitted],
                            [encoded[i] for i in admitted],
                            teacher.job_prefix,
                        )
                        pending[future] = admitted
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    admitted = pending.pop(future)
                    status, payload = future.result()
                    if status == "error":
                        logger.error("hf batch of %d failed in a worker: %s", len(admitted), payload[0])
                        payload = [TeacherError(payload[0], error_type=payload[1])] * len(admitted)
                    for i, res in zip(admitted, payload):
                        on_result(i, res)
    finally:
        if env_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_threads
