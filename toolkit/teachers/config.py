"""Which teacher to use and how to talk to it: :class:`TeacherConfig`, the backends and the default price table.

Every data_gen job and every recipe that calls a teacher takes one :class:`TeacherConfig`;
:func:`toolkit.teachers.load_teacher` builds the backend it names. The request and result shapes live in
:mod:`toolkit.teachers.base`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

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
