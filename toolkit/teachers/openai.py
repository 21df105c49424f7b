"""OpenAI API / OpenAI-compatible server teacher (vLLM serve, llama.cpp server, TGI, ...).

- ``AsyncOpenAI`` with bounded concurrency: a pool of ``max_concurrency`` workers pulls requests in order, and
  every HTTP call (including fan-out calls) holds one slot of a semaphore of the same size.
- Retries via tenacity: exponential backoff with jitter, but a server's ``Retry-After`` / ``retry-after-ms``
  wins when present; retried: 429, 408/409, 5xx, connection errors, timeouts, malformed or empty responses.
  The client's own retry loop is switched off (``max_retries=0``) so that attempts are counted in one place.
- ``requests_per_minute`` / ``tokens_per_minute`` via aiolimiter (tokens estimated before the call).
- Lean request path: the documented ``client.post(path, body=..., cast_to=<http response>)`` of the SDK (its
  "undocumented endpoints" API) sends the request, so auth, base URL, headers, timeouts and the SDK's error
  types (``RateLimitError``, ``APIStatusError`` with the response, ...) are unchanged, but the SDK's per-call
  request transformation and pydantic response models are skipped: the JSON body is read into plain dicts
  (``orjson`` when installed), which costs a fraction of the CPU. On a 2-core box the client's CPU per call
  decides the throughput (see ``benchmarks/generation_throughput.py``).
- Client-side fan-out: a server that returns fewer than ``n`` choices (llama.cpp ignores ``n``) gets the
  missing samples as ``n=1`` calls with derived seeds; after the first such response, ``n>1`` requests are
  fanned out right away.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import openai
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from toolkit.teachers.base import Generation, GenerationRequest, ResultCallback, Teacher, TeacherError, teacher_id
from toolkit.teachers.config import TeacherConfig
from toolkit.teachers.openai_request import (
    MalformedResponseError,
    endpoint,
    is_reasoning_model,
    parse_response,
    request_body,
)

logger = logging.getLogger(__name__)

try:  # a faster JSON decoder for the response bodies, when present
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover - depends on the environment
    _json_loads = json.loads


def _raw_response_type() -> type:
    """The HTTP response class of the installed SDK's HTTP client (``cast_to`` for a raw response)."""
    try:
        import httpx2

        return httpx2.Response
    except ImportError:  # pragma: no cover - openai < 3 uses httpx
        import httpx

        return httpx.Response


def make_http_client(transport: str) -> Any:
    """The HTTP client handed to ``AsyncOpenAI``: None = the SDK's default httpx client.

    ``aiohttp`` is the SDK's own ``DefaultAioHttpClient`` (``openai[aiohttp]``, a dependency of the toolkit):
    same API and error types, but about a third less client CPU per call (measured), which is what bounds
    throughput against a fast server (see ``benchmarks/generation_throughput.py``). ``auto`` uses it when
    installed and quietly falls back to httpx otherwise.
    """
    if transport == "httpx":
        return None
    try:
        import aiohttp  # noqa: F401 - only probing that the extra is installed
        from openai import DefaultAioHttpClient
    except ImportError as exc:
        if transport == "auto":
            return None
        raise ImportError('http_transport="aiohttp" needs aiohttp: pip install "openai[aiohttp]"') from exc
    return DefaultAioHttpClient()


def _retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After``: seconds or HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def is_retryable(exc: BaseException) -> bool:
    """Transient failures worth another attempt; client errors (400/401/403/404/422) are not."""
    if isinstance(exc, (MalformedResponseError, openai.APIConnectionError, openai.APIResponseValidationError)):
        return True  # APITimeoutError is an APIConnectionError
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    # A 200 with a body that is not JSON surfaces as a decode error from the client.
    return isinstance(exc, ValueError) and "JSON" in type(exc).__name__ + str(exc)


class OpenAITeacher(Teacher):
    """Teacher over the OpenAI chat/completions API (``messages`` → chat, ``prompt`` → legacy completions)."""

    def __init__(self, config: TeacherConfig, *, retry_initial_wait: float = 0.5):
        self.config = config
        self.model = config.model
        self.base_url = config.base_url
        self.id = teacher_id("openai", config.model, config.base_url, config.cache_namespace)
        # Reasoning models (o1/o3/o4-mini/gpt-5) take `max_completion_tokens` and only default sampling params.
        self.reasoning = (
            config.reasoning_model if config.reasoning_model is not None else is_reasoning_model(self.model)
        )
        self.price_per_mtok = config.prices()
        self.max_concurrency = config.max_concurrency
        self.max_retries = config.max_retries
        self.timeout = config.request_timeout
        self.retry_initial_wait = retry_initial_wait
        self.retry_max_wait = config.retry_max_wait
        api_key = config.resolved_api_key()
        if api_key is None:
            if config.base_url is None:
                raise ValueError(
                    "openai teacher: no API key; set OPENAI_API_KEY or `api_key` (or `base_url` for a local server)"
                )
            api_key = "no-key"  # local OpenAI-compatible servers accept any key
        self._api_key = api_key  # kept in memory only; never part of id, repr, cache or logs
        self.server_ignores_n = False

    def __repr__(self) -> str:
        return f"OpenAITeacher(id={self.id!r}, max_concurrency={self.max_concurrency})"

    # -- public --------------------------------------------------------------------------------------------
    def generate_each(
        self,
        requests: Sequence[GenerationRequest],
        on_result: ResultCallback,
        admit: Callable[[int], bool] | None = None,
    ) -> None:
        coro_factory = lambda: self.agenerate_each(requests, on_result, admit)  # noqa: E731
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(coro_factory())
            return
        # Called from inside a running loop (a notebook): run ours in a helper thread.
        errors: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(coro_factory())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]

    async def agenerate_each(
        self,
        requests: Sequence[GenerationRequest],
        on_result: ResultCallback,
        admit: Callable[[int], bool] | None = None,
    ) -> None:
        """Async core of :meth:`generate_each` (usable from an existing event loop)."""
        client = openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.timeout,
            http_client=make_http_client(self.config.http_transport),
        )
        self._sem = asyncio.Semaphore(self.max_concurrency)
        rpm, tpm = self.config.requests_per_minute, self.config.tokens_per_minute
        self._req_limiter = AsyncLimiter(rpm, 60) if rpm else None
        self._tok_limiter = AsyncLimiter(tpm, 60) if tpm else None
        self._client = client
        self._raw_type = _raw_response_type()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(requests)):
            queue.put_nowait(i)
        stopped = False

        async def worker() -> None:
            nonlocal stopped
            while not stopped:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if admit is not None and not admit(i):
                    stopped = True  # budget reached: let in-flight calls finish, send nothing new
                    return
                try:
                    result: list[Generation] | BaseException = await self._generate_one(requests[i])
                except TeacherError as exc:
                    result = exc
                on_result(i, result)

        try:
            await asyncio.gather(*(worker() for _ in range(min(self.max_concurrency, len(requests)))))
        finally:
            await client.close()

    # -- internals -----------------------------------------------------------------------------------------
    async def _generate_one(self, req: GenerationRequest) -> list[Generation]:
        want = req.n
        if self.server_ignores_n and want > 1:
            parts = await asyncio.gather(*(self._call(req, 1, req.sample_seed(j)) for j in range(want)))
            gens = [g for part in parts for g in part]
        else:
            gens = await self._call(req, want, req.sample_seed(0))
        if len(gens) < want:
            if len(gens) == 1 and not self.server_ignores_n:
                logger.info("%s returned 1 choice for n=%d: fanning out n>1 requests client-side", self.id, want)
                self.server_ignores_n = True
            have = len(gens)
            parts = await asyncio.gather(*(self._call(req, 1, req.sample_seed(have + j)) for j in range(want - have)))
            gens += [g for part in parts for g in part]
        if len(gens) < want:  # pragma: no cover - each call returns >= 1 choice or raises
            raise TeacherError(f"got {len(gens)} of {want} samples", error_type="IncompleteResponse")
        return gens[:want]

    def _wait(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        server_wait = _retry_after_seconds(exc) if exc is not None else None
        if server_wait is not None:
            # Honour the server, plus a little jitter so that a burst of 429s does not retry in lockstep.
            return min(self.retry_max_wait, server_wait + random.uniform(0, 0.1 * server_wait + 0.01))
        backoff = wait_exponential_jitter(initial=self.retry_initial_wait, max=self.retry_max_wait, jitter=0.5)
        return backoff(retry_state)

    async def _call(self, req: GenerationRequest, n: int, seed: int | None) -> list[Generation]:
        attempts = 0

        def before_sleep(state: Any) -> None:
            exc = state.outcome.exception()
            logger.debug(
                "%s: attempt %d failed (%s: %s); retrying", self.id, state.attempt_number, type(exc).__name__, exc
            )

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.max_retries + 1),
                wait=self._wait,
                retry=retry_if_exception(is_retryable),
                before_sleep=before_sleep,
                reraise=True,
            ):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    gens = await self._send(req, n, seed)
            return gens
        except Exception as exc:
            raise TeacherError(
                f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__, attempts=max(attempts, 1)
            ) from exc

    async def _send(self, req: GenerationRequest, n: int, seed: int | None) -> list[Generation]:
        body = request_body(self.model, req, n, seed, reasoning=self.reasoning)
        chat = req.messages is not None
        async with self._sem:
            if self._req_limiter is not None:
                await self._req_limiter.acquire()
            if self._tok_limiter is not None:
                tokens = self.estimate_prompt_tokens(req) + req.max_tokens * n
                await self._tok_limiter.acquire(min(tokens, self._tok_limiter.max_rate))
            # Non-2xx answers raise the SDK's status errors here, exactly as ``.create()`` would.
            resp = await self._client.post(endpoint(req), body=body, cast_to=self._raw_type)
        try:
            data = _json_loads(resp.content)
        except ValueError as exc:  # orjson.JSONDecodeError and json.JSONDecodeError are ValueErrors
            raise MalformedResponseError(f"response body is not JSON: {exc}") from exc
        return self._parse(data, chat=chat, stop=req.stop)

    def _parse(self, resp: Any, *, chat: bool, stop: list[str] | None = None) -> list[Generation]:
        """``n`` generations from a decoded response body; stops are cut client-side for reasoning models."""
        return parse_response(resp, chat=chat, stop=stop if self.reasoning else None)
