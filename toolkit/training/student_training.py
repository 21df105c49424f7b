"""Training pairs for text-to-text students: prompt encoding, tokenization, padding and the trainer.

* :func:`encode_prompt` builds the causal prompt, used by training and generation alike so they can never disagree.
  With ``chat_template=True`` the source becomes the user turn of the tokenizer's chat template (what an instruct
  model such as SmolLM2-Instruct expects); otherwise it is the raw source followed by :data:`RESPONSE_MARKER`.
* :func:`tokenize_pairs` turns ``(source, target)`` rows into training features. For causal LMs the features are
  ``prompt + target + eos`` with ``labels = -100`` on the prompt, so the loss is on the target only; for seq2seq
  they are encoder ``input_ids`` and decoder ``labels``.
* :class:`PairCollator` pads a batch dynamically (to its longest row; labels with ``-100``) or, for the throughput
  benchmark, to a fixed length (what fixed-length pipelines do).
* :func:`make_trainer` wires the features into a ``transformers.Trainer``; length grouping comes from
  ``TrainingArguments(train_sampling_strategy="group_by_length")`` (transformers 5 replaced ``group_by_length``).

Loading and batched generation live in :mod:`toolkit.models.students`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Trainer

from toolkit.training import allocator
from toolkit.training.target_loss import TargetOnlyLossTrainer

IGNORE_INDEX = -100
# Separates source from target in plain (non-chat) causal prompts; a newline-terminated marker so the target's
# first token is tokenized the same way at training and generation time.
RESPONSE_MARKER = "\nOutput:\n"
_SENTINEL = "\u2063SOURCE\u2063"  # invisible separator: never appears in real text

__all__ = [
    "IGNORE_INDEX",
    "RESPONSE_MARKER",
    "PairCollator",
    "encode_prompt",
    "make_trainer",
    "padding_stats",
    "tokenize_pairs",
]


# --------------------------------------------------------------------------------------------------------------
# Tokenization
# --------------------------------------------------------------------------------------------------------------
def _template_parts(tokenizer) -> tuple[list[int], list[int]]:
    """Token ids before and after the user content in the tokenizer's chat template (with generation prompt)."""
    cached = getattr(tokenizer, "_toolkit_template_parts", None)
    if cached is not None:
        return cached
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_template=True but the tokenizer has no chat template")
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True
    )
    if rendered.count(_SENTINEL) != 1:
        raise ValueError("could not locate the user content in the chat template")
    prefix, suffix = rendered.split(_SENTINEL)
    # The template text already contains any BOS it wants, so no special tokens are added here.
    parts = (
        tokenizer(prefix, add_special_tokens=False)["input_ids"],
        tokenizer(suffix, add_special_tokens=False)["input_ids"],
    )
    tokenizer._toolkit_template_parts = parts
    return parts


def encode_prompt(tokenizer, source: str, *, max_len: int | None = None, chat_template: bool = False) -> list[int]:
    """Token ids of a causal prompt for ``source``; truncation cuts the source, never the template/marker.

    Args:
        tokenizer: the student's tokenizer.
        source: the input text.
        max_len: cap on the number of *source* tokens (the template or marker adds a few more).
        chat_template: wrap the source as the user turn of the chat template (instruct models).

    Returns:
        The prompt ids; the target starts right after them.
    """
    body = tokenizer(source, add_special_tokens=False)["input_ids"]
    if max_len is not None:
        body = body[:max_len]
    if chat_template:
        prefix, suffix = _template_parts(tokenizer)
        return prefix + body + suffix
    bos = [tokenizer.bos_token_id] if getattr(tokenizer, "add_bos_token", False) and tokenizer.bos_token_id else []
    return bos + body + tokenizer(RESPONSE_MARKER, add_special_tokens=False)["input_ids"]


def tokenize_pairs(
    rows: Iterable[Mapping[str, Any]],
    tokenizer,
    *,
    is_seq2seq: bool,
    max_source_len: int,
    max_target_len: int,
    source_key: str = "source",
    target_key: str = "target",
    chat_template: bool = False,
) -> list[dict[str, list[int]]]:
    """Tokenize ``(source, target)`` rows into ``input_ids`` / ``attention_mask`` / ``labels`` features.

    Args:
        rows: dicts (or a ``datasets.Dataset``) with ``source_key`` and ``target_key`` string columns.
        tokenizer: the student's tokenizer.
        is_seq2seq: encoder-decoder (labels = target ids) or causal (labels = -100 on the prompt).
        max_source_len: max source tokens (truncated on the right).
        max_target_len: max target tokens, EOS included.
        source_key: column holding the input text.
        target_key: column holding the target text.
        chat_template: causal only — see :func:`encode_prompt`.

    Returns:
        One feature dict per row (unpadded); :class:`PairCollator` pads them.

    Raises:
        ValueError: a row misses a column, has a non-string/empty target, or the lengths are not positive.
    """
    if max_source_len <= 0 or max_target_len <= 0:
        raise ValueError(f"max lengths must be positive, got {max_source_len=} {max_target_len=}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token: the student could never learn to stop")
    features = []
    for row_index, row in enumerate(rows):
        for key in (source_key, target_key):
            if key not in row or not isinstance(row[key], str):
                raise ValueError(f"row {row_index}: missing or non-string column {key!r} (keys: {sorted(row)})")
        if not row[target_key].strip():
            raise ValueError(f"row {row_index}: empty target")
        if is_seq2seq:
            src = tokenizer(row[source_key], truncation=True, max_length=max_source_len)["input_ids"]
            tgt = tokenizer(text_target=row[target_key], truncation=True, max_length=max_target_len)["input_ids"]
            features.append({"input_ids": src, "attention_mask": [1] * len(src), "labels": tgt})
            continue
        prompt = encode_prompt(tokenizer, row[source_key], max_len=max_source_len, chat_template=chat_template)
        target = tokenizer(row[target_key], add_special_tokens=False)["input_ids"][: max_target_len - 1] + [eos]
        ids = prompt + target
        features.append(
            {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE_INDEX] * len(prompt) + target}
        )
    return features


# --------------------------------------------------------------------------------------------------------------
# Collation
# --------------------------------------------------------------------------------------------------------------
@dataclass
class PairCollator:
    """Pad features from :func:`tokenize_pairs` into tensors.

    Attributes:
        pad_token_id: id used to pad ``input_ids``.
        padding_side: ``"right"`` for training; ``"left"`` only for causal generation.
        pad_to: ``None`` = dynamic (longest row in the batch); an int = fixed length (every batch padded — and
            truncated — to it; the fixed-length baseline of ``benchmarks/train_throughput.py``).
        pad_to_multiple_of: round the dynamic length up (tensor-core friendly on GPUs).
    """

    pad_token_id: int
    padding_side: str = "right"
    pad_to: int | None = None
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")

    def _target_len(self, lengths: Sequence[int]) -> int:
        if self.pad_to is not None:
            return self.pad_to
        length = max(lengths)
        if self.pad_to_multiple_of:
            length = int(math.ceil(length / self.pad_to_multiple_of) * self.pad_to_multiple_of)
        return length

    def _pad(self, seqs: Sequence[Sequence[int]], value: int, length: int) -> list[list[int]]:
        out = []
        for seq in seqs:
            seq = list(seq)[:length]
            pad = [value] * (length - len(seq))
            out.append(pad + seq if self.padding_side == "left" else seq + pad)
        return out

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, Any]:
        ids = [f["input_ids"] for f in features]
        length = self._target_len([len(x) for x in ids])
        batch = {
            "input_ids": torch.tensor(self._pad(ids, self.pad_token_id, length)),
            "attention_mask": torch.tensor(self._pad([f["attention_mask"] for f in features], 0, length)),
        }
        if "labels" in features[0]:
            labels = [f["labels"] for f in features]
            # Seq2seq labels live on the decoder side and have their own length; causal labels align with inputs.
            aligned = all(len(lab) == len(x) for lab, x in zip(labels, ids))
            label_length = length if aligned else self._target_len([len(lab) for lab in labels])
            batch["labels"] = torch.tensor(self._pad(labels, IGNORE_INDEX, label_length))
        return batch


def padding_stats(batch: Mapping[str, Any]) -> dict[str, int]:
    """Real vs padded token counts in a collated batch (for throughput accounting)."""
    mask = batch["attention_mask"]
    return {"real_tokens": int(mask.sum()), "padded_tokens": int(mask.numel())}


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------
def make_trainer(
    model, tokenizer, training_args, train_features, eval_features=None, callbacks=None, return_freed_memory=None
):
    """A ``transformers.Trainer`` over :func:`tokenize_pairs` features with a dynamic-padding collator.

    Length-grouped batches come from ``training_args.train_sampling_strategy = "group_by_length"``: the sampler
    reads ``len(input_ids)`` of each feature, so no extra column is needed. Causal students get
    :class:`toolkit.training.target_loss.TargetOnlyLossTrainer` (logits and loss on target positions only: same loss and
    gradients, a fraction of the memory); seq2seq students the plain ``Trainer``.

    ``return_freed_memory`` (default: on when ``training_args.activation_checkpointing`` is) fixes glibc's mmap
    threshold (:func:`toolkit.training.allocator.return_large_frees_to_os`): peak RSS drops to what the tensors need, at the
    price of page faults on every large allocation (measured: +50 % CPU per step). With checkpointing the user
    chose memory over speed, and without it glibc keeps most of what checkpointing frees.
    """
    if return_freed_memory is None:
        return_freed_memory = bool(getattr(training_args, "activation_checkpointing", False))
    if return_freed_memory:
        allocator.return_large_frees_to_os()
    seq2seq = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    # Our features only carry model inputs; the column filter would otherwise inspect forward() of PEFT wrappers.
    training_args.remove_unused_columns = False
    return (Trainer if seq2seq else TargetOnlyLossTrainer)(
        model=model,
        args=training_args,
        train_dataset=train_features,
        eval_dataset=eval_features,
        data_collator=PairCollator(pad_token_id=tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
