"""Frozen-backbone feature extraction (the expensive half of LLMEmbed).

Run a bare backbone (``AutoModel``: no LM head, whose vocab-sized matmul would dominate a 135M model) over the
texts *once* and pool the hidden states of several layers into one vector per (text, layer)
(:func:`toolkit.methods.llmembed.head.pool_hidden`). One forward pass yields every layer
(``output_hidden_states=True``), batches are length-sorted to minimise padding (order is restored), and
everything runs under ``torch.inference_mode``. Each model keeps its own position scheme under either padding
side (:mod:`toolkit.models.backbone_inputs`).

The disk cache in front of this, and the sharding of a pass across the ranks, are
:mod:`toolkit.methods.llmembed.feature_cache`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import gather_object
from safetensors import safe_open
from tqdm.auto import tqdm
from transformers import AutoModel

from toolkit.meter import Cost
from toolkit.methods.llmembed.config import POOLING_CHOICES, LLMEmbedConfig
from toolkit.methods.llmembed.head import pool_hidden, resolve_layers
from toolkit.models.backbone_inputs import forward_params, model_inputs
from toolkit.models.loading import default_device, load_tokenizer, resolve_model

logger = logging.getLogger(__name__)


@dataclass
class ExtractionSpec:
    """What to extract from one backbone; everything here is part of the cache key."""

    model: str
    layers: list[int] = field(default_factory=lambda: [-1])
    pooling: str = "mean"
    max_length: int = 128
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(f"pooling must be one of {POOLING_CHOICES}, got {self.pooling!r}")
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError("max_length and batch_size must be >= 1")


def extraction_specs(config: LLMEmbedConfig) -> dict[str, ExtractionSpec]:
    """The feature sources ``config``'s variants read: ``llm``, ``llm_last`` (pooling ablation), ``encoder``.

    ``llm_last`` differs from ``llm`` only in pooling, so :func:`extract_sources` takes both from one set of forward
    passes.
    """
    shared = {"max_length": config.max_length, "batch_size": config.extract_batch_size}
    specs = {"llm": ExtractionSpec(config.llm_model, list(config.llm_layers), config.llm_pooling, **shared)}
    if "llmembed_last_token" in config.variants:
        specs["llm_last"] = ExtractionSpec(config.llm_model, list(config.llm_layers), "last", **shared)
    if config.uses_encoder():
        specs["encoder"] = ExtractionSpec(config.encoder_model, [-1], config.encoder_pooling, **shared)
    return specs


def cost_over_ranks(wall_s: float, cpu_s: float) -> Cost:
    """One job's cost summed over the processes that shared it: the slowest rank's wall time, every rank's CPU.

    A no-op with one process. Every rank must call it (it gathers).
    """
    parts = gather_object([(wall_s, cpu_s)])
    return Cost(max(wall for wall, _ in parts), sum(cpu for _, cpu in parts))


def load_backbone(name: str, device: str | None = None, padding_side: str | None = None):
    """Load a bare backbone (``AutoModel``: no LM / classification head) and its tokenizer, in eval mode.

    Returns:
        ``(model, tokenizer)``. The model is fp32 on CPU (bf16 is 20-30x slower on CPUs without it).
    """
    device = device or default_device()
    tokenizer = load_tokenizer(name, padding_side=padding_side)
    dtype = torch.float32 if device == "cpu" else "auto"
    t0 = time.perf_counter()
    model = AutoModel.from_pretrained(resolve_model(name), dtype=dtype).to(device).eval()
    logger.info("Loaded backbone %s on %s in %.1f s", name, device, time.perf_counter() - t0)
    return model, tokenizer


def length_sorted_batches(tokenizer, texts: Sequence[str], max_length: int, batch_size: int) -> Iterator[tuple]:
    """Tokenize once, then yield ``(row_indices, padded_batch)`` in descending length order.

    Sorting by length keeps padding (wasted compute) minimal; callers scatter results back with
    ``row_indices``. Longest first so an out-of-memory error shows up on the first batch, not the last.
    """
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        features = [{k: enc[k][i] for k in enc} for i in rows]
        yield rows, tokenizer.pad(features, return_tensors="pt")


def extract_embeddings(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    layers: Sequence[int],
    pooling: str | Sequence[str] = "mean",
    max_length: int = 128,
    batch_size: int = 16,
    show_progress: bool = True,
):
    """Pooled hidden states of ``layers`` for every text, from one forward pass per batch.

    ``pooling`` may be a list (e.g. ``["mean", "last"]``): the features are then a ``{pooling: tensor}`` dict, all
    from the same forward passes (a pooling ablation costs no second pass through the LLM).

    Args:
        model: A bare backbone (see :func:`load_backbone`); any model returning ``hidden_states``.
        tokenizer: Its tokenizer (must have a pad token; either padding side works).
        texts: Input texts.
        layers: Layer spec (see :func:`resolve_layers`).
        pooling: ``"mean"`` (masked mean) or ``"last"`` (last real token).
        max_length: Truncation length in tokens.
        batch_size: Texts per forward pass.
        show_progress: Show a tqdm bar.

    Returns:
        ``(features, n_tokens)``: a float32 tensor [N, len(layers), H] in the order of ``texts``, and the number
        of real tokens processed.
    """
    idx = resolve_layers(layers, model.config.num_hidden_layers)
    device = next(model.parameters()).device
    hidden_size = model.config.hidden_size
    poolings = [pooling] if isinstance(pooling, str) else list(pooling)
    outs = {p: torch.empty(len(texts), len(idx), hidden_size, dtype=torch.float32) for p in poolings}
    n_tokens = 0
    bar = tqdm(total=len(texts), desc="extract", unit="text", disable=not show_progress)
    params = forward_params(model)
    with torch.inference_mode():
        for rows, batch in length_sorted_batches(tokenizer, texts, max_length, batch_size):
            inputs = model_inputs(batch, device, params)
            hidden_states = model(**inputs, output_hidden_states=True).hidden_states
            if len(hidden_states) != model.config.num_hidden_layers + 1:  # layer indices would silently shift
                raise ValueError(
                    f"expected {model.config.num_hidden_layers + 1} hidden states (embeddings + layers), "
                    f"got {len(hidden_states)}"
                )
            mask = inputs["attention_mask"]
            for name, out in outs.items():
                pooled = [pool_hidden(hidden_states[i], mask, name) for i in idx]
                out[torch.tensor(rows)] = torch.stack(pooled, 1).cpu()
            n_tokens += int(mask.sum())
            bar.update(len(rows))
    bar.close()
    return (outs[pooling] if isinstance(pooling, str) else outs), n_tokens


def bare_forward(model, tokenizer, texts: Sequence[str], *, max_length: int = 128, batch_size: int = 16) -> int:
    """The same batches through the same model with no hidden states kept: the extraction speed ceiling.

    Returns:
        The number of real tokens processed.
    """
    device = next(model.parameters()).device
    n_tokens = 0
    params = forward_params(model)
    with torch.inference_mode():
        for _, batch in length_sorted_batches(tokenizer, texts, max_length, batch_size):
            inputs = model_inputs(batch, device, params)
            model(**inputs)
            n_tokens += int(inputs["attention_mask"].sum())
    return n_tokens


def checkpoint_num_params(name: str) -> int | None:
    """Parameter count of a local safetensors checkpoint from its headers only (no weights loaded)."""
    files = sorted(Path(resolve_model(name)).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():
                total += math.prod(fh.get_slice(key).get_shape())
    return total
