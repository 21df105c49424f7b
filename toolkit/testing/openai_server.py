"""Fake OpenAI-compatible server on 127.0.0.1 (``/v1/chat/completions``, ``/v1/completions``, Files, Batches).

A small asyncio HTTP/1.1 server (stdlib only, keep-alive) so that it sustains hundreds of concurrent requests,
either in a background thread of the test process (:class:`FakeOpenAIServer`; pytest fixture ``fake_openai`` in
``tests/fakes/openai_server.py``) or in its own process (:func:`toolkit.testing.openai_process.start_server_process`,
used by the throughput benchmark so that server CPU does not compete with the client's event loop). A test double
for users' CI too: point any OpenAI-compatible client at ``server.base_url``.

Behaviour:
- Deterministic text from (prompt, choice index, seed); greedy requests (temperature 0) ignore index and seed.
  ``responder(prompt, index, seed, body) -> str`` overrides the text (e.g. to emit parseable rationales).
- Honours ``n`` unless ``ignore_n`` (llama.cpp returns one choice whatever ``n`` says).
- Usage counts: whitespace tokens of the prompt and of each completion.
- Optional latency and faults (``429`` with ``Retry-After``, ``500``, ``timeout`` (hang), ``malformed`` JSON,
  ``empty`` choices) at a configurable rate. The draw is deterministic per request: it hashes the request body
  and how many times that exact body was seen before, so a retry of a faulted request gets a fresh draw.
- Reasoning models (``o1``/``o3``/``o4-mini``/``gpt-5``) answer 400 to ``max_tokens``, a non-default
  temperature / top_p, and ``stop``, as the real API does.
- A request log of the online calls with their JSON bodies: :attr:`FakeOpenAIServer.requests`,
  :meth:`FakeOpenAIServer.prompt_counts`, and of the answers actually written back:
  :meth:`FakeOpenAIServer.answered_counts`.
- ``answer_limit``: answer only the first N requests, hold every later one unanswered (a client killed then has
  many requests in flight and a known set of answers received).
- Teacher outputs: a model whose name contains ``reasoner`` (e.g. ``fake-reasoner``) returns a
  ``reasoning_content`` trace beside the answer, as vLLM's reasoning parsers and DeepSeek do; a
  ``response_format`` with a JSON schema gets a JSON answer that fits the schema; ``logprobs`` /
  ``top_logprobs`` get per-token log-probabilities; fields outside the OpenAI API (``extra_body``) are echoed in
  the response under ``echo``.
- The Batch API (``/v1/files``, ``/v1/batches``): ``server.batch``, see :mod:`toolkit.testing.openai_batch_api`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from toolkit.testing.fake_answers import (
    default_text,
    fill_schema,
    logprobs,
    prompt_text,
    reasoning_trace,
    schema_of,
    unit_draw,
)
from toolkit.testing.openai_batch_api import FakeBatchAPI
from toolkit.testing.openai_params import reasoning_error

__all__ = ["FAULT_KINDS", "FakeOpenAIServer", "RequestRecord", "default_text", "reasoning_trace"]

FAULT_KINDS = ("429", "500", "timeout", "malformed", "empty")
# Body fields of the OpenAI API; anything else came through ``extra_body`` and is echoed back.
_API_FIELDS = {
    "model",
    "messages",
    "prompt",
    "n",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "logprobs",
    "top_logprobs",
    "response_format",
    "stream",
}
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class RequestRecord:
    path: str
    prompt: str
    n: int
    seed: object
    temperature: float
    attempt: int
    fault: str | None
    time: float
    body: dict | None = None


class FakeOpenAIServer:
    """The fake server. ``start()`` serves from a daemon thread; ``stop()`` shuts it down.

    Args:
        latency: Seconds slept before each answer (simulates the model).
        ignore_n: Return one choice whatever ``n`` asks (llama.cpp behaviour).
        fault_rate: Probability that a request gets a fault (deterministic draw, see module doc).
        fault_kinds: Which faults to inject (subset of :data:`FAULT_KINDS`), picked uniformly.
        retry_after: Value of the ``Retry-After`` header (seconds) on injected 429s.
        hang_seconds: How long a ``timeout`` fault sleeps before answering (set above the client timeout).
        responder: Optional ``(prompt, index, seed, body) -> text``.
        seed: Salt of the fault draws.
        answer_limit: Answer only this many requests; hold later ones unanswered (None = answer all).
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        ignore_n: bool = False,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = FAULT_KINDS,
        retry_after: float = 0.05,
        hang_seconds: float = 5.0,
        responder: Callable[[str, int, object, dict], str] | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        answer_limit: int | None = None,
    ):
        self.latency = latency
        self.answer_limit = answer_limit
        self.ignore_n = ignore_n
        self.responder = responder
        self.seed = seed
        self.host = host
        self.port = port
        self.set_faults(fault_rate, fault_kinds, retry_after=retry_after, hang_seconds=hang_seconds)
        self._records: list[RequestRecord] = []
        self._seen: Counter = Counter()
        self._answered: Counter = Counter()
        self._admitted = 0  # completion requests that will be answered (answer_limit)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.batch = FakeBatchAPI(self._run_batch_line)

    # -- control -----------------------------------------------------------------------------------------------
    def set_faults(
        self,
        rate: float = 0.0,
        kinds: tuple[str, ...] | list[str] = FAULT_KINDS,
        *,
        retry_after: float | None = None,
        hang_seconds: float | None = None,
    ) -> None:
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; expected some of {FAULT_KINDS}")
        self.fault_rate = float(rate)
        self.fault_kinds = tuple(kinds)
        if retry_after is not None:
            self.retry_after = retry_after
        if hang_seconds is not None:
            self.hang_seconds = hang_seconds

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def prompt_counts(self) -> Counter:
        """How many HTTP requests each distinct prompt received."""
        return Counter(r.prompt for r in self.requests)

    def answered_counts(self) -> Counter:
        """How many answers (200 responses fully written to the socket) each distinct prompt received."""
        with self._lock:
            return Counter(self._answered)

    def count(self, substring: str) -> int:
        """Number of requests whose prompt contains ``substring``."""
        return sum(substring in r.prompt for r in self.requests)

    def reset_log(self) -> None:
        with self._lock:
            self._records.clear()

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(target=self._run_thread, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None and self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run_thread(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.serve_start())
        self._started.set()
        with contextlib.suppress(RuntimeError):
            self._loop.run_forever()

    async def serve_start(self) -> None:
        self._server = await asyncio.start_server(self._handle_conn, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    # -- HTTP --------------------------------------------------------------------------------------------------
    async def _handle_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                status, extra, payload, prompt = await self._dispatch(method, path, body, headers)
                reason = _REASONS.get(status, "OK")
                content_type = extra.pop("Content-Type", "application/json")
                hdrs = [
                    f"HTTP/1.1 {status} {reason}",
                    f"Content-Type: {content_type}",
                    f"Content-Length: {len(payload)}",
                ]
                hdrs += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(hdrs) + "\r\n\r\n").encode() + payload)
                await writer.drain()
                if prompt is not None and status == 200:
                    with self._lock:
                        self._answered[prompt] += 1
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _dispatch(
        self, method: str, path: str, raw: bytes, headers: dict
    ) -> tuple[int, dict, bytes, str | None]:
        """``(status, headers, payload, prompt)``; ``prompt`` is set for completion calls only."""
        path, _, query = path.partition("?")
        if path.startswith(("/v1/files", "/v1/batches")):
            return (*self.batch.handle(method, path, query, headers, raw), None)
        if method == "GET" and path.startswith("/_admin/"):
            return 200, {}, json.dumps(self._admin(path)).encode(), None
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/completions"):
            return 404, {}, json.dumps({"error": {"message": f"no route {method} {path}"}}).encode(), None
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return 400, {}, b'{"error": {"message": "invalid JSON body"}}', None
        prompt = prompt_text(body)
        status, extra, payload = await self._complete(path, body, raw, prompt)
        return status, extra, payload, prompt

    def _admin(self, path: str) -> dict:
        with self._lock:
            if path == "/_admin/prompts":
                return {"asked": dict(Counter(r.prompt for r in self._records)), "answered": dict(self._answered)}
            return {"requests": len(self._records), "answered": sum(self._answered.values())}

    async def _complete(self, path: str, body: dict, raw: bytes, prompt: str) -> tuple[int, dict, bytes]:
        body_key = hashlib.sha256(raw).hexdigest()
        with self._lock:
            attempt = self._seen[body_key]
            self._seen[body_key] += 1
        fault = None
        if self.fault_rate > 0 and unit_draw(self.seed, body_key, attempt, "rate") < self.fault_rate:
            fault = self.fault_kinds[int(unit_draw(self.seed, body_key, attempt, "kind") * len(self.fault_kinds))]
        record = RequestRecord(
            path=path,
            prompt=prompt,
            n=int(body.get("n") or 1),
            seed=body.get("seed"),
            temperature=float(body.get("temperature", 1.0) if body.get("temperature") is not None else 1.0),
            attempt=attempt,
            fault=fault,
            time=time.monotonic(),
            body=body,
        )
        with self._lock:
            self._records.append(record)
            held = self.answer_limit is not None and self._admitted >= self.answer_limit
            self._admitted += 1
        if held:
            await asyncio.Event().wait()  # never answered: the client sees a request in flight
        if self.latency:
            await asyncio.sleep(self.latency)
        if (message := reasoning_error(body)) is not None:
            return 400, {}, json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
        if fault == "429":
            headers = {"Retry-After": f"{self.retry_after:g}"}
            return 429, headers, b'{"error": {"message": "rate limited (injected)", "type": "rate_limit"}}'
        if fault == "500":
            return 500, {}, b'{"error": {"message": "internal error (injected)"}}'
        if fault == "timeout":
            await asyncio.sleep(self.hang_seconds)
        if fault == "malformed":
            return 200, {}, b'{"id": "cmpl-x", "object": "chat.completion", "choices": [{"index": 0, "mess'
        return 200, {}, json.dumps(self._completion(path, body, prompt, empty=fault == "empty")).encode()

    def _run_batch_line(self, url: str, body: dict) -> tuple[int, dict]:
        """One line of a batch: (status, response body), with the online calls' texts (no faults, no latency)."""
        if url not in ("/v1/chat/completions", "/v1/completions"):
            return 404, {"error": {"message": f"no route {url}"}}
        if (message := reasoning_error(body)) is not None:
            return 400, {"error": {"message": message, "type": "invalid_request_error"}}
        return 200, self._completion(url, body, prompt_text(body), empty=False)

    def _completion(self, path: str, body: dict, prompt: str, *, empty: bool) -> dict:
        n = 1 if self.ignore_n else int(body.get("n") or 1)
        temperature = body.get("temperature", 1.0)
        greedy = temperature is not None and float(temperature) == 0.0
        seed = body.get("seed")
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        texts = []
        draws = []  # (index, seed) of each choice: greedy choices are all the same draw
        for i in range(0 if empty else n):
            idx, sd = (0, "greedy") if greedy else (i, seed)
            draws.append((idx, sd))
            if self.responder:
                text = self.responder(prompt, idx, sd, body)
            elif schema_of(body) is not None:
                text = json.dumps(fill_schema(schema_of(body), prompt, idx, sd))
            else:
                text = default_text(prompt, idx, sd, max_tokens)
            for stop in body.get("stop") or []:
                text = text.split(stop, 1)[0]
            texts.append(text)
        chat = path.endswith("chat/completions")
        reasoner = "reasoner" in str(body.get("model", ""))
        choices = []
        for i, text in enumerate(texts):
            choice = {"index": i, "finish_reason": "stop", "logprobs": logprobs(body, text, chat=chat)}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
                if reasoner:
                    choice["message"]["reasoning_content"] = reasoning_trace(prompt, *draws[i])
            else:
                choice["text"] = text
            choices.append(choice)
        p_tok, c_tok = len(prompt.split()), sum(len(t.split()) for t in texts)
        response = {
            "id": "cmpl-fake",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": choices,
            "usage": {"prompt_tokens": p_tok, "completion_tokens": c_tok, "total_tokens": p_tok + c_tok},
        }
        extra = {name: value for name, value in body.items() if name not in _API_FIELDS}
        if extra or "response_format" in body:
            response["echo"] = {"extra_body": extra, "response_format": body.get("response_format")}
        return response


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--ignore_n", action="store_true")
    parser.add_argument("--answer_limit", type=int, default=None)
    args = parser.parse_args()
    server = FakeOpenAIServer(
        latency=args.latency, ignore_n=args.ignore_n, port=args.port, answer_limit=args.answer_limit
    )

    async def serve() -> None:
        await server.serve_start()
        print(f"PORT {server.port}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    _main()
