"""Causal students on TRL's ``SFTTrainer``: prompt-completion rows, loss on the completion, (Q)LoRA adapters.

The recipe loads the student bare (:func:`toolkit.models.students.load_student` with ``attach_lora=False``) and hands the
LoRA config to :func:`sft_trainer`; TRL attaches the adapter after seeding (``trl/scripts/sft.py``'s way).
:func:`train` runs it and measures what it cost; :func:`merge_adapter` folds a trained adapter into its base.
After training, :func:`generation_model` hands out the model ready to generate whatever wrapped it (DDP, FSDP,
DeepSpeed), and :func:`distributed_info` records how the run was distributed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import Trainer
from trl import SFTTrainer
from trl.distributed import DistributedBackend
from trl.models import unwrap_model_for_generation

from toolkit.configs import apply_cpu_safe_defaults
from toolkit.meter import Meter
from toolkit.models.loading import count_parameters, load_causal_lm, load_tokenizer
from toolkit.training.budget import tokens_trained

logger = logging.getLogger(__name__)

__all__ = [
    "copy_card_to_merged",
    "distributed_info",
    "generation_model",
    "keep_adapters_fp32",
    "merge_adapter",
    "sft_trainer",
    "train",
]


def sft_trainer(model, tokenizer, args, train_dataset, *, eval_dataset=None, peft_config=None) -> SFTTrainer:
    """An ``SFTTrainer`` on ``prompt`` / ``completion`` rows with the loss on completions only.

    Args:
        model: The student (bare when ``peft_config`` is given, see :func:`toolkit.models.students.load_student`).
        tokenizer: Its tokenizer (``processing_class``).
        args: A ``trl.SFTConfig``; ``completion_only_loss`` is forced on, bf16/fp16 off on CPU.
        train_dataset: Prompt-completion rows; extra columns such as ``task`` are dropped.
        eval_dataset: Optional prompt-completion dev rows: the dev loss is logged every ``args.eval_steps``.
        peft_config: A LoRA config (:func:`toolkit.models.students.lora_config`) for TRL to attach.
    """
    apply_cpu_safe_defaults(args)
    args.completion_only_loss = True
    if args.include_num_input_tokens_seen in (False, "no"):  # tokens/s from the trainer's own counter, as everywhere
        args.include_num_input_tokens_seen = "non_padding"
    keep = [c for c in train_dataset.column_names if c not in ("prompt", "completion")]
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset.remove_columns(keep) if keep else train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    if not trainer.is_fsdp_enabled:  # FSDP flattens a block into one tensor: its LoRA weights keep the base's bf16
        keep_adapters_fp32(trainer.model)
    return trainer


def keep_adapters_fp32(model) -> None:
    """Undo TRL's bf16 cast of QLoRA adapters: keep them fp32, PEFT's default.

    A resumed run gets fp32 adapters (PEFT upcasts what it loads), so bf16 ones would make a killed-and-resumed run
    drift from an uninterrupted one.
    """
    for param in model.parameters():
        if param.requires_grad and param.dtype == torch.bfloat16:
            param.data = param.data.float()


@contextmanager
def generation_model(trainer: Trainer) -> Iterator[Any]:
    """The trained model, ready to generate on every rank, whatever wrapped it for training (TRL's way).

    Unwrapped from DDP / FSDP / DeepSpeed (ZeRO-3 parameters gathered, gradient checkpointing off meanwhile); under
    FSDP1 the root's own flattened parameters (embeddings, final norm, head) are gathered too, as TRL's online
    trainers do. Every rank must enter it and generate the same number of batches
    (:func:`toolkit.distributed.map_sharded`).
    """
    backend = DistributedBackend(trainer.accelerator)
    with (
        unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model,
        backend.summon_full_params(trainer.model_wrapped, recurse=False, writeback=False),
    ):
        yield model


def distributed_info(trainer: Trainer) -> dict[str, Any]:
    """How a trained ``trainer`` ran: ``{"distributed_type", "num_processes", "wrapper"}``.

    ``wrapper`` is the class that wrapped the model for training (``DistributedDataParallel``,
    ``FullyShardedDataParallel`` ...; the model's own class with one process): what actually ran, whatever the
    launch config asked for (an FSDP config on a machine without GPUs runs DDP).
    """
    accelerator = trainer.accelerator
    return {
        "distributed_type": accelerator.distributed_type.value,
        "num_processes": accelerator.num_processes,
        "wrapper": type(trainer.model_wrapped).__name__,
    }


def train(trainer: SFTTrainer) -> dict:
    """Train (resuming from ``args.resume_from_checkpoint``, a checkpoint folder or ``None``) and measure it.

    Returns:
        ``{"train_seconds", "train_cpu_seconds", "train_peak_rss_mb", "model_memory_mb", "train_steps",
        "train_tokens", "train_tokens_per_second", "train_loss", "trainable_params", "log_history"}``;
        ``train_tokens`` is the trainer's count of non-padding tokens (prompt + answer) it trained on, over all
        processes (``state.num_input_tokens_seen``); a trainer built without the counter falls back to the mean
        row length × rows seen.
    """
    args = trainer.args
    trainable = count_parameters(trainer.model, trainable_only=True)
    with Meter() as meter:
        out = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint or None)
    seconds = meter.wall_s
    world = max(1, args.world_size)
    rows_seen = trainer.state.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    tokens = int(trainer.state.num_input_tokens_seen or 0) or tokens_trained(
        [len(ids) for ids in trainer.train_dataset["input_ids"]], rows_seen
    )
    return {
        "train_seconds": seconds,
        "train_cpu_seconds": meter.cpu_s,
        "train_peak_rss_mb": meter.peak_rss_mb,
        "model_memory_mb": trainer.model.get_memory_footprint() / 2**20,  # weights + buffers: what 4-bit shrinks
        "train_steps": trainer.state.global_step,
        "train_tokens": tokens,
        "train_tokens_per_second": tokens / seconds if seconds else 0.0,
        "train_loss": out.training_loss,
        "trainable_params": trainable,
        "log_history": list(trainer.state.log_history),
    }


def merge_adapter(adapter_dir: str, base_model: str, output_dir: str, dtype: str | None = None) -> str:
    """Merge a LoRA adapter into a full-precision copy of its base and save a standalone checkpoint.

    Merging into 4-bit weights would re-quantize (lossy, and unsupported for saving on CPU), so — as QLoRA does —
    the base is reloaded *unquantized* (fp32 on CPU, the checkpoint dtype / bf16 on GPU), the adapter applied and
    ``merge_and_unload`` folds ``B·A·alpha/r`` into the weights. The tokenizer is saved alongside.

    Returns:
        ``output_dir``.
    """
    base = load_causal_lm(base_model, dtype=dtype)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.save_pretrained(output_dir, safe_serialization=True)
    has_tokenizer = any((Path(adapter_dir) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json"))
    load_tokenizer(adapter_dir if has_tokenizer else base_model).save_pretrained(output_dir)
    logger.info("Merged adapter %s into %s -> %s", adapter_dir, base_model, output_dir)
    return output_dir


def copy_card_to_merged(run_dir: str, merged_dir: str) -> None:
    """The run's model card, for its merged checkpoint (a plain transformers model, no adapter)."""
    card = (Path(run_dir) / "README.md").read_text(encoding="utf-8")
    (Path(merged_dir) / "README.md").write_text(card.replace("library_name: peft", "library_name: transformers"))
