"""The Teacher protocol: one request shape, one result shape, for every backend.

A :class:`GenerationRequest` is chat ``messages`` *or* a plain ``prompt`` plus sampling parameters; a teacher
returns ``n`` :class:`Generation` objects per request. Backends (``openai``, ``hf``, ``vllm``) implement
:meth:`Teacher.generate_each`, which streams one result per request through a callback so that the generation
engine can commit every completed request to the cache at once (a killed job then loses only in-flight work).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

BACKENDS = ("openai", "hf", "vllm")

# USD per 1M tokens (input, output). Used only when the config does not give prices; unknown models cost 0
# (a warning says so) because local / self-hosted teachers are free per token.
DEFAULT_PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}
# The OpenAI Batch API bills every model at half its synchronous price (same tokens, results within 24h).
BATCH_DISCOUNT = 0.5
DEFAULT_BATCH_PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    model: (price_in * BATCH_DISCOUNT, price_out * BATCH_DISCOUNT)
    for model, (price_in, price_out) in DEFAULT_PRICES_PER_MTOK.items()
}


@dataclass
class Usage:
    """Token counts of one generation (prompt tokens are attributed to the first sample of an API call)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass
class Generation:
    """One sampled output: raw text, why it stopped, its token usage, optional per-token logprobs.

    Args:
        text: The answer (a reasoning model's final answer, without its reasoning trace).
        finish_reason: Why decoding stopped (``stop``, ``length``, ...).
        usage: Token counts.
        logprobs: Log-probability of each generated token, when asked for.
        reasoning_content: A reasoning model's trace (vLLM / DeepSeek ``reasoning_content``), when the server
            returns one.
        top_logprobs: Per generated token, the ``top_logprobs`` most likely tokens and their log-probabilities.
    """

    text: str
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    logprobs: list[float] | None = None
    reasoning_content: str | None = None
    top_logprobs: list[dict[str, float]] | None = None


@dataclass
class GenerationRequest:
    """What to ask the teacher. Exactly one of ``messages`` (chat) or ``prompt`` (completion) is set.

    Args:
        messages: Chat messages ``[{"role": ..., "content": ...}]``.
        prompt: A plain text prompt.
        n: Number of samples wanted.
        temperature: 0 means greedy decoding.
        top_p: Nucleus sampling mass.
        max_tokens: Completion length cap.
        stop: Stop sequences (the text is cut before them).
        seed: Sampling seed; backends derive ``seed + sample_offset + i`` for the i-th sample of a fan-out.
        sample_offset: Index of this request's first sample within the logical request. The engine sets it
            when topping up a cached request (k=5 after k=4 asks only for sample 4); it is *not* part of the
            cache identity and only shifts derived seeds so that topped-up samples differ from cached ones.
        logprobs: Ask for per-token logprobs where the backend supports them.
        top_logprobs: Also keep the k most likely tokens at each position (0-20; implies ``logprobs``).
        extra_body: Extra JSON fields for an OpenAI-compatible server, merged into the request body (vLLM's
            ``structured_outputs`` / ``guided_json``, ``chat_template_kwargs``, ``top_k``, ``min_p`` ...).
        response_format: Structured output: a Pydantic model class (its JSON schema is sent), a JSON schema
            dict, or a full OpenAI ``response_format`` dict (``{"type": "json_schema", ...}``).
    """

    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: list[str] | None = None
    seed: int | None = None
    sample_offset: int = 0
    logprobs: bool = False
    top_logprobs: int | None = None
    extra_body: dict[str, Any] | None = None
    response_format: Any = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("GenerationRequest needs exactly one of `messages` or `prompt`")
        if self.n < 1:
            raise ValueError(f"GenerationRequest.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.top_logprobs is not None:
            if not 0 <= self.top_logprobs <= 20:
                raise ValueError(f"top_logprobs must be in [0, 20], got {self.top_logprobs}")
            self.logprobs = True
        if self.response_format is not None:
            self.response_format = response_format_dict(self.response_format)

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    def sampling(self) -> dict[str, Any]:
        """The parameters that change the output (part of the cache identity).

        Options left unset add no key, so requests that do not use them keep the cache keys they always had.
        """
        params: dict[str, Any] = {
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
            "max_tokens": int(self.max_tokens),
            "stop": list(self.stop) if self.stop else None,
            "seed": self.seed,
            "logprobs": bool(self.logprobs),
        }
        optional = {
            "top_logprobs": self.top_logprobs,
            "extra_body": self.extra_body,
            "response_format": self.response_format,
        }
        params.update({name: value for name, value in optional.items() if value is not None})
        return params

    def content(self) -> dict[str, Any]:
        """The exact input (messages or prompt) as a JSON-able dict."""
        return {"messages": self.messages} if self.messages is not None else {"prompt": self.prompt}

    def prompt_chars(self) -> int:
        if self.prompt is not None:
            return len(self.prompt)
        return sum(len(m.get("content") or "") for m in self.messages or [])

    def replace(self, **changes: Any) -> GenerationRequest:
        return dataclasses.replace(self, **changes)

    def sample_seed(self, i: int = 0) -> int | None:
        """Seed for the i-th sample of this request when samples are drawn one call at a time."""
        return None if self.seed is None else int(self.seed) + self.sample_offset + i


JSON_RESPONSE_TYPES = ("json_schema", "json_object", "text")


def response_format_dict(spec: Any) -> dict[str, Any]:
    """An OpenAI ``response_format`` from a Pydantic model class, a JSON schema dict, or a ``response_format``."""
    if isinstance(spec, type) and hasattr(spec, "model_json_schema"):
        schema = {"name": spec.__name__, "schema": spec.model_json_schema(), "strict": True}
        return {"type": "json_schema", "json_schema": schema}
    if not isinstance(spec, dict):
        raise TypeError(f"response_format must be a Pydantic model class or a dict, got {type(spec).__name__}")
    if spec.get("type") in JSON_RESPONSE_TYPES:
        return spec
    return {"type": "json_schema", "json_schema": {"name": spec.get("title", "response"), "schema": spec}}


def reject_server_options(backend: str, requests: Sequence[GenerationRequest]) -> None:
    """Raise when a request uses options only an OpenAI-compatible server understands (never ignore them)."""
    for request in requests:
        if request.extra_body is not None or request.response_format is not None:
            raise ValueError(
                f"the {backend} teacher does not support extra_body / response_format "
                "(use the openai backend against an OpenAI-compatible server such as `vllm serve`)"
            )


class TeacherError(RuntimeError):
    """A request that still failed after all retries. ``attempts`` counts the calls made."""

    def __init__(self, message: str, *, error_type: str, attempts: int = 1):
        super().__init__(message)
        self.error_type = error_type
        self.attempts = attempts


ResultCallback = Callable[[int, "list[Generation] | BaseException"], None]


class Teacher(ABC):
    """A text generator that answers :class:`GenerationRequest` s. ``id`` keys the generation cache."""

    #: Stable identity: backend + model + base-URL host. Never contains a secret.
    id: str
    #: Price table entry (USD per 1M tokens in, out).
    price_per_mtok: tuple[float, float] = (0.0, 0.0)

    @abstractmethod
    def generate_each(
        self,
        requests: Sequence[GenerationRequest],
        on_result: ResultCallback,
        admit: Callable[[int], bool] | None = None,
    ) -> None:
        """Run ``requests``, calling ``on_result(i, generations_or_exception)`` as each one completes.

        ``admit(i)`` is asked right before request ``i`` is sent; when it returns False the request is skipped
        (no callback), which is how the engine enforces a cost budget without cancelling in-flight calls.
        """

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        """Blocking convenience API: ``n`` generations per request, in order; raises the first failure."""
        results: list[Any] = [None] * len(requests)

        def collect(i: int, res: list[Generation] | BaseException) -> None:
            results[i] = res

        self.generate_each(requests, collect)
        for res in results:
            if isinstance(res, BaseException):
                raise res
        return results

    def cost(self, usage: Usage) -> float:
        """USD cost of ``usage`` under this teacher's price table entry."""
        price_in, price_out = self.price_per_mtok
        return (usage.prompt_tokens * price_in + usage.completion_tokens * price_out) / 1e6

    def estimate_prompt_tokens(self, request: GenerationRequest) -> int:
        """Rough prompt size for budgets and token-rate limits (~4 characters per token for English)."""
        return max(1, request.prompt_chars() // 4)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (clients, models)."""


HTTP_TRANSPORTS = ("auto", "aiohttp", "httpx")
MODES = ("online", "batch")


@dataclass
class TeacherConfig:
    """Which teacher to use and how to talk to it (shared by every data_gen job)."""

    backend: str = field(default="hf", metadata={"help": f"Teacher backend: one of {', '.join(BACKENDS)}."})
    model: str = field(
        default="local:smollm2-135m",
        metadata={"help": "Model name (API model id, local path, Hub id or a toolkit.models.loading local default)."},
    )
    base_url: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible server URL (openai backend); None = api.openai.com."}
    )
    api_key: str | None = field(
        default=None, metadata={"help": "API key; default $OPENAI_API_KEY. Never logged, cached or saved."}
    )
    max_concurrency: int = field(default=32, metadata={"help": "openai: max requests in flight."})
    requests_per_minute: float | None = field(default=None, metadata={"help": "openai: request rate limit."})
    tokens_per_minute: float | None = field(default=None, metadata={"help": "openai: token rate limit (estimated)."})
    max_retries: int = field(default=6, metadata={"help": "openai: retries on 429/5xx/timeouts/bad responses."})
    request_timeout: float = field(default=60.0, metadata={"help": "openai: seconds before a call times out."})
    retry_max_wait: float = field(default=60.0, metadata={"help": "openai: cap on one backoff wait (seconds)."})
    http_transport: str = field(
        default="auto",
        metadata={
            "help": "openai: HTTP transport under AsyncOpenAI: 'aiohttp' (the SDK's `openai[aiohttp]` client, about "
            "a third less client CPU per call), 'httpx' (the SDK default) or 'auto' (aiohttp when installed)."
        },
    )
    mode: str = field(
        default="online",
        metadata={
            "help": "openai: 'online' (one HTTP call per request) or 'batch' (the OpenAI Batch API: half price, "
            "results within 24h; the batch ids are saved in `batch_dir` so a killed job resumes by polling)."
        },
    )
    cache_namespace: str | None = field(
        default=None,
        metadata={
            "help": "openai: replaces the server host:port in the teacher id (the cache key), so a self-hosted "
            "server that moved to another host or port still hits the cache."
        },
    )
    reasoning_model: bool | None = field(
        default=None,
        metadata={
            "help": "openai: send `max_completion_tokens` and no temperature/top_p/stop (o1/o3/o4-mini/gpt-5); "
            "None = detect from the model name."
        },
    )
    batch_dir: str | None = field(
        default=None,
        metadata={"help": "batch mode: folder of the batch state files (data_gen: <output_dir>/openai_batches)."},
    )
    batch_poll_interval: float = field(default=15.0, metadata={"help": "batch mode: first poll wait (seconds)."})
    batch_poll_max_interval: float = field(
        default=300.0, metadata={"help": "batch mode: the poll wait grows x1.5 up to this (seconds)."}
    )
    batch_max_wait: float | None = field(
        default=None,
        metadata={
            "help": "batch mode: stop polling after this many seconds and return (unfinished items are pending; "
            "a re-run resumes the saved batches). None = wait until the batches end."
        },
    )
    batch_max_requests: int = field(
        default=50_000, metadata={"help": "batch mode: requests per batch file at most (the API allows 50,000)."}
    )
    price_input_per_mtok: float | None = field(
        default=None,
        metadata={"help": "USD per 1M prompt tokens (default: built-in table, batch table in batch mode, else 0)."},
    )
    price_output_per_mtok: float | None = field(
        default=None,
        metadata={
            "help": "USD per 1M completion tokens (default: built-in table, batch table in batch mode, else 0)."
        },
    )
    batch_size: int = field(default=16, metadata={"help": "hf: prompts per generate() call."})
    device: str | None = field(default=None, metadata={"help": "hf: torch device (default: cuda if available)."})
    workers: int = field(
        default=0,
        metadata={
            "help": "hf on CPU: decoding processes, each with a model copy and a share of the threads (0 = auto: "
            "one per thread this process has, as many copies as fit in half the free memory; 1 = in-process)."
        },
    )
    dtype: str | None = field(default=None, metadata={"help": "hf/vllm: torch dtype name (default: fp32 on CPU)."})
    engine_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "vllm: keyword arguments of `vllm.LLM` as a dict (YAML) or JSON string (CLI), e.g. "
            '\'{"tensor_parallel_size": 2, "gpu_memory_utilization": 0.85, "max_model_len": 4096, '
            '"enable_prefix_caching": true}\'.'
        },
    )
    chunk_size: int = field(
        default=2048,
        metadata={
            "help": "vllm: requests per engine call; each chunk's answers are in the cache before the next is "
            "sent, so a killed job resumes after the last finished chunk (and the progress bar moves per chunk)."
        },
    )

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"TeacherConfig.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.max_concurrency < 1 or self.batch_size < 1:
            raise ValueError("max_concurrency and batch_size must be >= 1")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.workers < 0:
            raise ValueError("workers must be >= 0 (0 = auto)")
        if self.http_transport not in HTTP_TRANSPORTS:
            raise ValueError(
                f"TeacherConfig.http_transport must be one of {HTTP_TRANSPORTS}, got {self.http_transport!r}"
            )
        if self.mode not in MODES:
            raise ValueError(f"TeacherConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "batch" and self.backend != "openai":
            raise ValueError(f"mode='batch' (the OpenAI Batch API) needs backend='openai', got {self.backend!r}")
        if self.cache_namespace is not None:
            if self.backend != "openai":
                raise ValueError("cache_namespace replaces the server host:port of an openai teacher's id")
            if not self.cache_namespace.strip() or any(c.isspace() for c in self.cache_namespace):
                raise ValueError(f"cache_namespace must be a non-empty word, got {self.cache_namespace!r}")
        if self.batch_poll_interval <= 0 or self.batch_poll_max_interval < self.batch_poll_interval:
            raise ValueError("need 0 < batch_poll_interval <= batch_poll_max_interval")
        if self.batch_max_wait is not None and self.batch_max_wait < 0:
            raise ValueError("batch_max_wait must be >= 0")
        if not 1 <= self.batch_max_requests <= 50_000:
            raise ValueError("batch_max_requests must be in [1, 50000] (the Batch API limit)")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if self.engine_kwargs is not None and self.backend != "vllm":
            raise ValueError(f"engine_kwargs are vllm.LLM arguments; the {self.backend} backend takes none")
        self.vllm_engine_kwargs()  # a malformed JSON string fails here, not when the engine starts

    def vllm_engine_kwargs(self) -> dict[str, Any]:
        """``engine_kwargs`` as a dict (a CLI value is a JSON string)."""
        if self.engine_kwargs is None:
            return {}
        if isinstance(self.engine_kwargs, dict):
            return dict(self.engine_kwargs)
        try:
            parsed = json.loads(self.engine_kwargs)
        except ValueError as exc:
            raise ValueError(f"engine_kwargs is not a JSON object: {self.engine_kwargs!r} ({exc})") from exc
        if not isinstance(parsed, dict):
            raise ValueError(f"engine_kwargs must be a JSON object, got {self.engine_kwargs!r}")
        return parsed

    def prices(self) -> tuple[float, float]:
        """(input, output) USD per 1M tokens: explicit config, else the built-in table, else free.

        In batch mode the built-in table is the batch one (half price); explicit prices are used as given.
        """
        table = (DEFAULT_BATCH_PRICES_PER_MTOK if self.mode == "batch" else DEFAULT_PRICES_PER_MTOK).get(
            self.model, (None, None)
        )
        price_in = self.price_input_per_mtok if self.price_input_per_mtok is not None else table[0]
        price_out = self.price_output_per_mtok if self.price_output_per_mtok is not None else table[1]
        if self.backend == "openai" and (price_in is None or price_out is None):
            logger.warning("No price known for model %r: cost is reported as 0 (set price_*_per_mtok).", self.model)
        return float(price_in or 0.0), float(price_out or 0.0)

    def resolved_api_key(self) -> str | None:
        return self.api_key or os.environ.get("OPENAI_API_KEY")


def teacher_id(backend: str, model: str, base_url: str | None = None, namespace: str | None = None) -> str:
    """``backend:model[@host[:port]]``: the host identifies *which* server, credentials never appear.

    ``namespace`` replaces ``host:port`` (``backend:model@namespace``): the same server under another address
    keeps its cache.
    """
    tid = f"{backend}:{model}"
    if namespace:
        tid += f"@{namespace}"
    elif base_url:
        parsed = urlparse(base_url)
        host = parsed.hostname or base_url
        if parsed.port:
            host = f"{host}:{parsed.port}"
        tid += f"@{host}"
    return tid


def usage_json(usage: Usage, cost: float | None = None) -> str:
    data: dict[str, Any] = usage.to_dict()
    if cost is not None:
        data["cost_usd"] = round(cost, 8)
    return json.dumps(data, sort_keys=True)
