"""Forward kwargs for a bare backbone over a padded batch, respecting each model's own position scheme.

Models number their positions differently, and padding interacts with each scheme:

* **0-based positions** (Llama, GPT-2, BERT, OPT, BART ...): by default they take ``arange(T)``, which is right
  for right padding but shifts every real token of a left-padded row. For these we pass
  ``position_ids = cumsum(mask) - 1`` (0, 1, 2 ... over real tokens whatever the padding side).
* **Pad-aware positions starting at padding_idx + 1** (RoBERTa, XLM-R, CamemBERT, MPNet, Longformer, ESM ...):
  the model derives its positions from ``input_ids`` itself (pads get ``padding_idx``, real tokens
  ``padding_idx + 1, ...``), for either padding side. Passing 0-based ids would move every token onto the wrong
  (partly the padding) position embedding, so for these we pass none and let the model compute its own.

A model is recognised as pad-aware by its learned position embedding carrying a ``padding_idx``: that is how
the RoBERTa family reserves the pad position, and no 0-based model sets one.
"""

from __future__ import annotations

import inspect

from torch import nn


def derives_own_positions(model) -> bool:
    """Whether ``model`` computes pad-aware positions itself (a position ``nn.Embedding`` with a ``padding_idx``)."""
    return any(
        isinstance(module, nn.Embedding) and module.padding_idx is not None and "position" in name
        for name, module in model.named_modules()
    )


def forward_params(model) -> set[str]:
    """The kwargs :func:`model_inputs` may fill for ``model``: its forward's parameters, less ``position_ids``
    when the model derives its own (see :func:`derives_own_positions`)."""
    params = set(inspect.signature(model.forward).parameters)
    if "position_ids" in params and derives_own_positions(model):
        params.discard("position_ids")
    return params


def model_inputs(batch, device, params: set[str]) -> dict:
    """Forward kwargs: ids, mask and, for 0-based models, mask-derived position ids.

    Args:
        batch: A padded tokenizer batch (``input_ids``, ``attention_mask`` ...).
        device: Target device.
        params: From :func:`forward_params` (compute once per model).
    """
    inputs = {k: v.to(device) for k, v in batch.items() if k in params}
    if "position_ids" in params:
        # 0, 1, 2 ... over real tokens whatever the padding side (pads get 0; they are masked anyway).
        inputs["position_ids"] = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    if "use_cache" in params:
        inputs["use_cache"] = False  # no KV cache: it costs memory and is never read here
    return inputs
