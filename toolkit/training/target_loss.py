"""Causal-LM loss computed only where there are targets: no full-vocabulary logits on prompt or padding positions.

A causal student trained on ``prompt + target`` (labels ``-100`` on the prompt, see
:func:`toolkit.training.student_training.tokenize_pairs`) needs logits only at the positions that predict a target token. A plain
``model(**batch).loss`` materialises ``batch x seq x vocab`` fp32 logits (8 x 320 x 49,152 x 4 B = 503 MB for
SmolLM2) plus as much again for the log-softmax and for each of their gradients; for LMCor the prompt (source and
k candidates) is most of every row, so nearly all of that is thrown away.

:func:`causal_target_loss` runs the same ``model(...)`` call (so DDP / PEFT / accelerate wrappers behave as
usual) with a forward pre-hook on the output head that keeps only the hidden states of target-predicting
positions, and computes the same cross-entropy as transformers' ``ForCausalLMLoss`` (shifted labels, fp32 logits,
``sum / num_items_in_batch`` when a count is given, else the mean): same value, same gradients.

:class:`TargetOnlyLossTrainer` is a ``transformers.Trainer`` whose ``compute_loss`` uses it for causal models;
:func:`target_only_trainer_class` adds the same ``compute_loss`` to another Trainer subclass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer

IGNORE_INDEX = -100

__all__ = [
    "IGNORE_INDEX",
    "TargetOnlyLossTrainer",
    "causal_target_loss",
    "output_head",
    "target_only_trainer_class",
]


def _unwrap(model):
    """The module under DDP / DataParallel wrappers (``.module``); PEFT models forward attribute access."""
    while hasattr(model, "module") and not hasattr(model, "get_output_embeddings"):
        model = model.module
    return model


def output_head(model):
    """The LM head module (``get_output_embeddings()``) of a possibly wrapped causal LM."""
    head = _unwrap(model).get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embeddings (LM head)")
    return head


@contextlib.contextmanager
def _head_only_at(model, positions) -> Iterator[None]:
    """While active, the LM head sees ``hidden[positions]`` (shape ``[1, n, hidden]``) instead of every position."""

    def pre_hook(_module, args):
        hidden = args[0]
        if hidden.shape[:2] != positions.shape:
            # e.g. logits_to_keep sliced the sequence: the mask no longer lines up, so refuse rather than guess.
            raise ValueError(f"LM head input {tuple(hidden.shape)} does not match labels {tuple(positions.shape)}")
        return (hidden[positions].unsqueeze(0), *args[1:])

    handle = output_head(model).register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()


def causal_target_loss(model, inputs: Mapping[str, Any], num_items_in_batch=None) -> tuple[Any, Any]:
    """``(loss, outputs)`` of a causal LM with logits only at positions whose next token is a target.

    Args:
        model: a causal LM (plain, PEFT-wrapped or DDP-wrapped). Encoder-decoder models fall back to
            ``model(**inputs)`` (their decoder logits are all target positions anyway).
        inputs: ``input_ids``, ``attention_mask``, ``labels`` (``-100`` = no target), as from ``PairCollator``.
        num_items_in_batch: total target tokens of the (accumulated) batch: the loss is ``sum / num_items_in_batch``
            as in transformers' ``ForCausalLMLoss``; ``None`` gives the mean over this batch's targets.

    Returns:
        The loss and the model outputs, whose ``logits`` are ``[1, n_targets, vocab]`` (target positions only, in
        row-major order).
    """
    config = getattr(_unwrap(model), "config", None)
    if getattr(config, "is_encoder_decoder", False):
        kwargs = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
        outputs = model(**inputs, **kwargs)
        return outputs.loss, outputs
    labels = inputs["labels"]
    rest = {k: v for k, v in inputs.items() if k != "labels"}
    shifted = labels[:, 1:]
    is_target = shifted != IGNORE_INDEX
    # Position t predicts token t+1: the last position predicts nothing.
    positions = F.pad(is_target, (0, 1), value=False)
    with _head_only_at(model, positions):
        outputs = model(**rest, use_cache=False)
    logits = outputs.logits.reshape(-1, outputs.logits.shape[-1]).float()
    targets = shifted[is_target].to(logits.device)
    if num_items_in_batch is None:
        loss = F.cross_entropy(logits, targets, reduction="mean")
    else:
        loss = F.cross_entropy(logits, targets, reduction="sum")
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        loss = loss / num_items_in_batch
    outputs.loss = loss
    return loss, outputs


class _TargetOnlyLossMixin:
    """``compute_loss`` through :func:`causal_target_loss` for causal LMs; everything else as the base Trainer."""

    def _target_only_applies(self, model, inputs, return_outputs: bool) -> bool:
        config = getattr(_unwrap(model), "config", None)
        return (
            "labels" in inputs
            and not getattr(config, "is_encoder_decoder", False)
            and getattr(self, "label_smoother", None) is None
            and getattr(self, "compute_loss_func", None) is None
            # Evaluation that hands logits to compute_metrics needs them at every position.
            and not (return_outputs and getattr(self, "compute_metrics", None) is not None)
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._target_only_applies(model, inputs, return_outputs):
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        # Same reduction as the base class: a token count is only honoured when the model takes loss kwargs.
        count = num_items_in_batch if self.model_accepts_loss_kwargs else None
        loss, outputs = causal_target_loss(model, inputs, count)
        if self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs and count is not None:
            # Mirrors Trainer.compute_loss: the count is global, DDP averages gradients over processes.
            loss = loss * (
                self.accelerator.num_processes // self.get_tp_size() if self.args.n_gpu <= 1 else self.args.n_gpu
            )
        return (loss, outputs) if return_outputs else loss


def target_only_trainer_class(base: type) -> type:
    """``base`` (a ``transformers.Trainer`` subclass) with the target-only ``compute_loss``."""
    return type(f"TargetOnly{base.__name__}", (_TargetOnlyLossMixin, base), {})


class TargetOnlyLossTrainer(_TargetOnlyLossMixin, Trainer):
    """``transformers.Trainer`` whose causal-LM loss computes logits on target positions only."""
