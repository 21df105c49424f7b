"""Where the toolkit's client CPU goes, per request and per phase (used by ``generation_throughput.py``).

One extra toolkit run, not counted in the rate table, with the synchronous steps of the request path wrapped in
thread-CPU timers (``time.thread_time``: CPU of the calling thread only, so other processes and threads do not
count). The phases:

- request build: the toolkit's JSON body + the SDK's options model (``FinalRequestOptions``) + ``_build_request``
  (auth and default headers, URL, the httpx2 ``Request``);
- SDK response wrapper: ``_process_response`` (the body was already read by the transport; no I/O inside);
- retry wrapper: tenacity's ``AsyncRetrying`` per call (constructor + iteration on the success path);
- transport, sync parts: aiohttp's request object and its HTTP response parser (``data_received``), the httpx2
  ``Response`` the SDK's aiohttp adaptor builds;
- JSON parse: decoding the body and turning choices into ``Generation`` s;
- cache hand-off: ``GenerationCache.submit`` (rows, enqueue to the writer thread);
- engine bookkeeping: the engine's per-result work less the hand-off (spend, budget, results);
- plan: cache lookup + cost estimate of every item, before the first request;
- the rest of the event loop thread's CPU: the SDK's and httpx2's async send path (client.send, auth, the
  aiohttp adaptor), aiohttp's async parts, the event loop itself (async code that suspends cannot be timed by
  wrapping; compare with the bare-aiohttp row: aiohttp + loop + its JSON decode, without the SDK);
- writer thread: acknowledgements (progress, per group commit) and the SQLite commits (+ any other thread).

Timers cost about a microsecond each (a dozen per request); the instrumented total is printed next to the
uninstrumented runs' so that the overhead is visible.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PHASES = {
    "build": "request build (toolkit body + SDK options, headers, URL, httpx2 Request)",
    "sdk_response": "SDK response wrapper (_process_response)",
    "retry": "retry wrapper (tenacity, success path)",
    "transport": "transport, sync parts (aiohttp request object + response parser, httpx2 Response)",
    "parse": "JSON parse (body -> dicts -> Generation)",
    "handoff": "cache hand-off (submit to the writer thread)",
    "bookkeeping": "engine bookkeeping (per result, less the hand-off)",
    "plan": "plan (cache lookup + cost estimates, once per run)",
    "rest": "SDK/httpx2 async send path + aiohttp async parts + event loop (rest of the loop thread)",
    "ack": "writer thread: acknowledgements (progress, once per commit)",
    "commit": "writer thread: SQLite commits (+ other threads)",
}


class _Timers:
    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.cpu[phase] += seconds

    def wrap(self, phase: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(phase, time.thread_time() - t0)

        return timed

    def wrap_async(self, phase: str, fn: Callable) -> Callable:
        """Only for coroutines that do not suspend (else other tasks' CPU would be counted too)."""

        @functools.wraps(fn)
        async def timed(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.add(phase, time.thread_time() - t0)

        return timed


@contextmanager
def _patched(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    missing = object()
    saved = [(obj, name, vars(obj).get(name, missing)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in reversed(saved):
            if value is missing:  # it was inherited (or a method of an instance's class): drop the override
                delattr(obj, name)
            else:
                setattr(obj, name, value)


def measure_phases(run_job: Callable[[], None], teacher: Any, n_requests: int) -> dict[str, float]:
    """Run ``run_job`` (a toolkit ``run_generation`` over ``teacher``) instrumented; client CPU ms per request.

    Returns ``{phase: ms per request}`` for :data:`PHASES` plus ``"total"`` (process CPU, all threads).
    """
    import aiohttp.client_proto as aiohttp_proto
    import aiohttp.client_reqrep as aiohttp_req
    import httpx2
    import openai._base_client as base_client
    import tenacity
    from openai._models import FinalRequestOptions

    import toolkit.generation.engine as generation
    import toolkit.teachers.openai as openai_teacher
    from toolkit.generation.cache import GenerationCache

    timers = _Timers()
    orig_submit = GenerationCache.submit
    orig_generate_each = teacher.generate_each

    def submit(self, *args, on_commit=None, **kwargs):
        if on_commit is not None:
            kwargs["on_commit"] = timers.wrap("ack", on_commit)
        t0 = time.thread_time()
        try:
            return orig_submit(self, *args, **kwargs)
        finally:
            timers.add("handoff", time.thread_time() - t0)

    def generate_each(requests, on_result, admit=None):
        return orig_generate_each(requests, timers.wrap("on_result", on_result), admit)

    construct = FinalRequestOptions.__dict__["construct"].__func__
    patches = [
        (base_client.BaseClient, "_build_request", timers.wrap("build", base_client.BaseClient._build_request)),
        (FinalRequestOptions, "construct", classmethod(timers.wrap("build", construct))),
        (
            base_client.AsyncAPIClient,
            "_process_response",
            timers.wrap_async("sdk_response", base_client.AsyncAPIClient._process_response),
        ),
        (tenacity.AsyncRetrying, "__init__", timers.wrap("retry", tenacity.AsyncRetrying.__init__)),
        (tenacity.AsyncRetrying, "__anext__", timers.wrap_async("retry", tenacity.AsyncRetrying.__anext__)),
        (aiohttp_req.ClientRequest, "__init__", timers.wrap("transport", aiohttp_req.ClientRequest.__init__)),
        (
            aiohttp_proto.ResponseHandler,
            "data_received",
            timers.wrap("transport", aiohttp_proto.ResponseHandler.data_received),
        ),
        (httpx2.Response, "__init__", timers.wrap("transport", httpx2.Response.__init__)),
        (openai_teacher, "request_body", timers.wrap("build", openai_teacher.request_body)),
        (openai_teacher, "_json_loads", timers.wrap("parse", openai_teacher._json_loads)),
        (openai_teacher, "parse_response", timers.wrap("parse", openai_teacher.parse_response)),
        (GenerationCache, "submit", submit),
        (generation, "_plan", timers.wrap("plan", generation._plan)),
        (teacher, "generate_each", generate_each),
    ]
    with _patched(patches):
        cpu0, main0 = time.process_time(), time.thread_time()
        run_job()
        cpu, main = time.process_time() - cpu0, time.thread_time() - main0
    phase_cpu = timers.cpu
    out = {
        "build": phase_cpu["build"],
        "sdk_response": phase_cpu["sdk_response"],
        "retry": phase_cpu["retry"],
        "transport": phase_cpu["transport"],
        "parse": phase_cpu["parse"],
        "handoff": phase_cpu["handoff"],  # a file cache acknowledges in the writer thread, not inside submit
        "bookkeeping": phase_cpu["on_result"] - phase_cpu["handoff"],
        "plan": phase_cpu["plan"],
        "ack": phase_cpu["ack"],
    }
    loop_thread = sum(v for k, v in out.items() if k != "ack")
    out["rest"] = main - loop_thread
    out["commit"] = cpu - main - phase_cpu["ack"]
    out["total"] = cpu
    return {k: 1000 * v / n_requests for k, v in out.items()}


def phase_rows(phases: dict[float, dict[str, float]], totals: dict[float, dict[str, float]]) -> list[dict]:
    """The breakdown table: one row per phase, one column per latency; the same run's per-variant totals below.

    Args:
        phases: ``{latency: measure_phases(...)}``.
        totals: ``{latency: {variant label: median client CPU ms/req of its uninstrumented runs}}``.
    """
    cols = [f"{lat:g} s" for lat in phases]
    rows = []
    for key, label in PHASES.items():
        row = {"client CPU ms/req": label}
        for lat, col in zip(phases, cols):
            share = phases[lat][key] / phases[lat]["total"] if phases[lat]["total"] else 0.0
            row[col] = f"{phases[lat][key]:.3f} ({share:.0%})"
        rows.append(row)
    rows.append({"client CPU ms/req": "= total, instrumented toolkit run (all threads)"})
    rows[-1].update({col: f"{phases[lat]['total']:.3f}" for lat, col in zip(phases, cols)})
    for label in next(iter(totals.values()), {}):
        rows.append({"client CPU ms/req": f"same run, uninstrumented: {label}"})
        rows[-1].update({col: f"{totals[lat][label]:.3f}" for lat, col in zip(phases, cols)})
    return rows
