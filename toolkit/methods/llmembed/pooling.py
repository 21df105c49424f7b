"""LLMEmbed's layer selection and pooling: which hidden states feed the head, and how each becomes one vector.

Masked pooling, unlike the reference implementation's plain mean: it averages only real tokens, so a text's vector
does not depend on the batch it was padded into.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from toolkit.methods.llmembed.config import POOLING_CHOICES

# ---------------------------------------------------------------------------------------------------------------
# Layer selection and pooling
# ---------------------------------------------------------------------------------------------------------------


def resolve_layers(layers: Sequence[int], num_hidden_layers: int) -> list[int]:
    """Map a layer spec to indices into ``outputs.hidden_states`` (0 = embeddings, ``L`` = last layer).

    Args:
        layers: Layer indices. Non-negative values index ``hidden_states`` directly (0 is the embedding
            output); negative values count from the last layer (``-1`` = last, ``[-5, ..., -1]`` = last 5).
            For Llama-family models transformers returns the last entry *after* the final RMSNorm (it equals
            ``last_hidden_state``), the others before any norm; the head standardizes each view anyway.
        num_hidden_layers: ``config.num_hidden_layers`` (``hidden_states`` has one more entry).

    Returns:
        The resolved indices, in the order given.

    Raises:
        ValueError: empty spec, out-of-range index, or the same layer named twice.
    """
    if not layers:
        raise ValueError("at least one layer is needed")
    n_states = num_hidden_layers + 1
    resolved = []
    for layer in layers:
        index = layer + n_states if layer < 0 else layer
        if not 0 <= index < n_states:
            raise ValueError(f"layer {layer} out of range for a model with {num_hidden_layers} layers")
        resolved.append(index)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"layers {list(layers)} name the same layer twice (resolved {resolved})")
    return resolved


def masked_mean_pool(hidden, attention_mask):
    """Mean over real (mask = 1) positions only. ``hidden`` [B, T, H], mask [B, T] → [B, H] (float32).

    ``masked_fill`` rather than multiplying by the mask: attention over an all-pad row can produce NaN at pad
    positions, and ``NaN * 0`` is still NaN.
    """
    mask = attention_mask.to(torch.bool).unsqueeze(-1)
    summed = hidden.float().masked_fill(~mask, 0.0).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1).to(summed.dtype)
    return summed / counts


def last_token_pool(hidden, attention_mask):
    """Hidden state of each row's last real token, for left *and* right padding. → [B, H] (float32)."""
    mask = attention_mask.to(torch.long)
    length = mask.shape[1]
    # Position of the last 1 in each row: first 1 of the reversed mask, mapped back.
    last = (length - 1) - mask.flip(dims=[1]).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()


def pool_hidden(hidden, attention_mask, pooling: str):
    """Dispatch to :func:`masked_mean_pool` or :func:`last_token_pool`."""
    if pooling == "mean":
        return masked_mean_pool(hidden, attention_mask)
    if pooling == "last":
        return last_token_pool(hidden, attention_mask)
    raise ValueError(f"pooling must be one of {POOLING_CHOICES}, got {pooling!r}")
