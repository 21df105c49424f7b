"""Students: one loader (plain, LoRA, or 4-bit QLoRA; seq2seq or causal) and one batched generate.

* :func:`load_student` loads a seq2seq or causal LM through :mod:`toolkit.models.loading`; with ``lora`` it attaches a PEFT
  adapter, with ``quantization="4bit"`` it loads NF4 weights and prepares them for k-bit training (QLoRA). With
  ``attach_lora=False`` the model comes back bare and :func:`lora_config` goes to TRL's ``SFTTrainer``
  (``peft_config=``), which attaches the adapter after seeding, as ``trl/scripts/sft.py`` does.
* :func:`generate` decodes batched, length-sorted (original order restored), left-padded for causal models, from
  source texts (prompts built by :func:`toolkit.training.student_training.encode_prompt`, as in training) or from prompt ids;
  an optional ``prefix_allowed_tokens_fn`` factory constrains decoding (e.g. to a label set,
  :mod:`toolkit.models.label_constraint`).

Training features, padding and the trainer are in :mod:`toolkit.training.student_training` (re-exported here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
from tqdm.auto import tqdm

from toolkit.models import loading as models
from toolkit.training.student_training import PairCollator, encode_prompt

logger = logging.getLogger(__name__)

__all__ = ["generate", "load_student", "lora_config"]


def lora_config(
    *,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: str | Sequence[str] = "all-linear",
    seq2seq: bool = False,
) -> LoraConfig:
    """The LoRA adapter config; ``["all-linear"]`` (a YAML list) becomes the string PEFT understands."""
    if r <= 0:
        raise ValueError(f"lora_r must be positive, got {r}")
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    if targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM,
    )


def load_student(
    name_or_path: str,
    *,
    lora: bool = False,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    lora_target_modules: str | list[str] = "all-linear",
    quantization: str | None = None,
    quant_storage: Any = None,
    dtype: Any = None,
    gradient_checkpointing: bool = False,
    attach_lora: bool = True,
    revision: str | None = None,
):
    """Load a student model and its tokenizer.

    Args:
        name_or_path: anything :func:`toolkit.models.loading.resolve_model` accepts (``local:smollm2-135m``, a dir, a Hub id).
        lora: wrap the model in a PEFT LoRA adapter (only the adapter trains).
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator.
        lora_dropout: dropout on the LoRA branch.
        lora_target_modules: modules to adapt; ``"all-linear"`` adapts every linear layer but the output head.
        quantization: ``None`` or ``"4bit"`` (causal only; QLoRA — implies ``lora=True``).
        quant_storage: 4-bit only: storage dtype of the packed weights (see :func:`toolkit.models.loading.bnb_4bit_config`).
        dtype: torch dtype (name) for the weights; default fp32 on CPU.
        gradient_checkpointing: 4-bit only: let ``prepare_model_for_kbit_training`` turn it on (with input grads).
        attach_lora: ``False`` returns the model without the adapter (4-bit weights still prepared): hand
            :func:`lora_config` to ``SFTTrainer(peft_config=...)`` instead.
        revision: Hub revision (branch, tag or commit) of a Hub model (``--model_revision``); the commit the
            weights came from ends up in ``model.config._commit_hash``.

    Returns:
        ``(model, tokenizer, is_seq2seq)``; the model is in train mode, the tokenizer pads on the right.

    Raises:
        ValueError: 4-bit requested for a seq2seq model, or bad LoRA settings.
    """
    if lora_r <= 0:
        raise ValueError(f"lora_r must be positive, got {lora_r}")
    seq2seq = models.is_seq2seq(name_or_path, revision=revision)
    tokenizer = models.load_tokenizer(name_or_path, padding_side="right", revision=revision)
    if seq2seq:
        if quantization is not None:
            raise ValueError("4-bit quantization is only supported for causal students")
        model = models.load_seq2seq_lm(name_or_path, dtype=dtype, revision=revision)
    else:
        model = models.load_causal_lm(
            name_or_path, quantization=quantization, dtype=dtype, quant_storage=quant_storage, revision=revision
        )
        if quantization is not None:
            # Not under FSDP: the preparation upcasts norms and embeddings to fp32, and FSDP cannot flatten a block
            # of mixed dtypes (TRL skips it for sharded QLoRA too); the trainer turns on gradient checkpointing.
            if not models.fsdp_enabled():
                model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
            lora = True
    if getattr(model.generation_config, "pad_token_id", None) is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if lora and attach_lora:
        config = lora_config(
            r=lora_r, alpha=lora_alpha, dropout=lora_dropout, target_modules=lora_target_modules, seq2seq=seq2seq
        )
        model = get_peft_model(model, config)
        trainable = models.count_parameters(model, trainable_only=True)
        total = models.count_parameters(model)
        logger.info(
            "LoRA r=%d: %d / %d parameters trainable (%.2f%%)", lora_r, trainable, total, 100 * trainable / total
        )
    model.train()
    return model, tokenizer, seq2seq


def generate(
    model,
    tokenizer,
    inputs: Sequence[str] | None = None,
    *,
    is_seq2seq: bool = False,
    max_new_tokens: int = 64,
    num_beams: int = 1,
    batch_size: int = 16,
    max_source_len: int | None = None,
    chat_template: bool = False,
    show_progress: bool = False,
    prompt_ids: Sequence[Sequence[int]] | None = None,
    eos_token_ids: Sequence[int] | None = None,
    constraint: Callable[[int], Callable] | None = None,
    return_stats: bool = False,
    synced_gpus: bool = False,
):
    """Decode with greedy (``num_beams=1``) or beam search; returns stripped strings in input order.

    Inputs are sorted by length so each batch pads little, then the original order is restored. Causal prompts
    are left-padded (generation continues from the right end) and built with
    :func:`~toolkit.training.student_training.encode_prompt`, exactly as in training, unless ``prompt_ids`` gives them
    already tokenized (e.g. a chat prompt rendered and tokenized whole, as TRL does for prompt-completion rows).

    Args:
        inputs: Source texts (or ``None`` with ``prompt_ids``).
        eos_token_ids: Tokens that end an answer (default: the tokenizer's EOS); a causal answer is cut at the first
            of them (or a pad token).
        constraint: ``constraint(prompt_length)`` returns a ``prefix_allowed_tokens_fn`` for one batch whose
            (padded) prompts are ``prompt_length`` tokens long, e.g.
            :meth:`toolkit.models.label_constraint.LabelTrie.prefix_fn`.
        return_stats: Also return ``{"seconds", "prompt_tokens", "generated_tokens", "tokens_per_second"}``
            (generated tokens per second of wall time, prefill included).
        synced_gpus: Keep stepping until every process's batch is done (sharded generation under FSDP, where each
            forward pass is a collective and a rank that stops early would leave the others waiting).
    """
    if batch_size <= 0 or num_beams <= 0 or max_new_tokens <= 0:
        raise ValueError(f"batch_size, num_beams and max_new_tokens must be positive ({batch_size=}, {num_beams=})")
    if (inputs is None) == (prompt_ids is None):
        raise ValueError("give exactly one of inputs and prompt_ids")
    if prompt_ids is not None:
        encoded = [list(ids) for ids in prompt_ids]
    elif is_seq2seq:
        encoded = [
            tokenizer(x, truncation=max_source_len is not None, max_length=max_source_len)["input_ids"] for x in inputs
        ]
    else:
        encoded = [encode_prompt(tokenizer, x, max_len=max_source_len, chat_template=chat_template) for x in inputs]
    eos = list(eos_token_ids) if eos_token_ids is not None else [tokenizer.eos_token_id]
    stop = set(eos) | {tokenizer.pad_token_id}
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    collator = PairCollator(pad_token_id=tokenizer.pad_token_id, padding_side="right" if is_seq2seq else "left")
    device = next(model.parameters()).device
    models.guard_bnb_cpu_packing(model)
    was_training = model.training
    model.eval()
    outputs: list[str] = [""] * len(encoded)
    n_prompt = n_gen = 0
    batches = range(0, len(order), batch_size)
    if show_progress:
        batches = tqdm(batches, desc="generate", unit="batch")
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            for start in batches:
                idx = order[start : start + batch_size]
                batch = collator([{"input_ids": encoded[i], "attention_mask": [1] * len(encoded[i])} for i in idx])
                batch = {k: v.to(device) for k, v in batch.items()}
                width = 1 if is_seq2seq else batch["input_ids"].shape[1]  # seq2seq: the decoder start token
                out = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    num_beams=num_beams,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=eos if len(eos) > 1 else eos[0],
                    prefix_allowed_tokens_fn=constraint(width) if constraint else None,
                    synced_gpus=synced_gpus,
                )
                n_prompt += int(batch["attention_mask"].sum())
                for row_index, seq in zip(idx, out[:, 0 if is_seq2seq else width :].tolist()):
                    if not is_seq2seq:  # cut at the end of the answer (what follows is padding)
                        seq = seq[: next((k for k, tok in enumerate(seq) if tok in stop), len(seq))]
                    n_gen += sum(tok not in stop for tok in seq)
                    outputs[row_index] = tokenizer.decode(seq, skip_special_tokens=True).strip()
    finally:
        model.train(was_training)
    if not return_stats:
        return outputs
    seconds = time.perf_counter() - t0
    stats = {"seconds": seconds, "prompt_tokens": n_prompt, "generated_tokens": n_gen}
    return outputs, stats | {"tokens_per_second": n_gen / seconds if seconds else 0.0}
