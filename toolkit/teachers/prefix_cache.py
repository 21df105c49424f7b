"""Shared-prefix KV reuse for the local ``hf`` teacher.

Few-shot jobs send the same instruction + demonstrations in front of every prompt; recomputing that prefix for
every prompt (and, with ``num_return_sequences``, for every sample) is most of a local teacher's prefill work.
Here the KV cache of the longest common token prefix is computed once (batch 1), kept, and repeated over the
batch; each prompt then only prefills its own suffix. For ``n`` samples of one prompt the whole prompt (prefix +
suffix) is prefilled once and its cache repeated ``n`` times before ``generate`` draws the samples.

Padding: left padding would shift the shared prefix to different positions per row, so it goes *between* the
prefix and each suffix instead (``[prefix | pad .. pad | suffix]``), masked out by the attention mask. Position ids
come from the mask (``cumsum - 1``, what ``generate`` itself does), so every real token keeps exactly the
position it has without reuse: the prefix at ``0..P-1``, the suffix right after it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache

logger = logging.getLogger(__name__)


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of token sequences (0 for an empty list)."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        tok = first[i]
        if any(s[i] != tok for s in seqs):
            return i
    return n


class PrefixKVStore:
    """Computes and remembers the KV cache of one token prefix (the most recent one: a job has one prefix).

    Args:
        model: the causal LM (in eval mode) whose caches are stored.
        device: where input tensors go.
    """

    def __init__(self, model, device: Any):
        self.model = model
        self.device = device
        self._key: tuple[int, ...] | None = None
        self._cache = None
        self.computed = 0  # how many prefixes were actually run through the model (tests / logging)

    def get(self, prefix: Sequence[int]):
        """A fresh ``DynamicCache`` (batch 1) holding ``prefix``'s keys/values; the stored one is never mutated."""
        key = tuple(prefix)
        if key != self._key:
            cache = DynamicCache(config=self.model.config)
            ids = torch.tensor([key], dtype=torch.long, device=self.device)
            # logits_to_keep=1: only the cache is needed, not a 49k-vocabulary row per prefix token.
            self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            self._key = key
            self._cache = cache
            self.computed += 1
            logger.debug("prefix KV computed for %d tokens", len(key))
        return copy.deepcopy(self._cache)


def prepare_batch(
    store: PrefixKVStore,
    ids: Sequence[Sequence[int]],
    prefix_len: int,
    num_seq: int,
    pad_id: int,
) -> tuple[Any, Any, Any]:
    """Inputs for ``model.generate(input_ids, attention_mask, past_key_values=cache, num_return_sequences=num_seq)``.

    Args:
        store: holds the prefix cache.
        ids: the batch's prompt token ids; the first ``prefix_len`` tokens of every row are identical.
        prefix_len: shared prefix length, ``< min(len(row))`` so that every row has a suffix token left.
        num_seq: samples per prompt (``num_return_sequences``).
        pad_id: pad token id (masked out).

    Returns:
        ``(input_ids, attention_mask, cache)``: ``[batch, P + W]`` tensors laid out ``[prefix | pad | suffix]`` and
        a cache of ``batch * num_seq`` rows. With ``num_seq > 1`` the cache already covers everything but each
        row's last token, so ``generate`` prefills one token per sample.
    """
    rows = len(ids)
    suffixes = [list(x[prefix_len:]) for x in ids]
    if min(len(s) for s in suffixes) < 1:
        raise ValueError("every prompt needs at least one token after the shared prefix")
    width = max(len(s) for s in suffixes)
    input_ids = torch.full((rows, prefix_len + width), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, prefix_len + width), dtype=torch.long)
    if prefix_len:
        input_ids[:, :prefix_len] = torch.tensor(list(ids[0][:prefix_len]), dtype=torch.long)
        mask[:, :prefix_len] = 1
    for row, s in enumerate(suffixes):
        input_ids[row, prefix_len + width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[row, prefix_len + width - len(s) :] = 1
    input_ids, mask = input_ids.to(store.device), mask.to(store.device)
    if prefix_len:
        cache = store.get(ids[0][:prefix_len])
        cache.batch_repeat_interleave(rows)
    else:
        cache = DynamicCache(config=store.model.config)
    if num_seq > 1 and width > 1:
        # Prefill each prompt once (all but its last token), then hand generate n copies of that cache.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        store.model(
            input_ids=input_ids[:, prefix_len:-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, prefix_len:-1],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    if num_seq > 1:
        cache.batch_repeat_interleave(num_seq)
    return input_ids, mask, cache
