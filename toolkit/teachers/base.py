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
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger(__name__)


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
