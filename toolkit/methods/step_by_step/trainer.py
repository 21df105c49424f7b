"""Distilling step-by-step training: ``loss = alpha * label_loss + (1 - alpha) * rationale_loss`` on the field's trainers.

The loss is a small mixin over the field's trainers: seq2seq students (T5, the paper's setup) train with
transformers' ``Seq2SeqTrainer``, causal students (SmolLM2) with TRL's ``SFTTrainer`` on prompt-completion pairs,
the loss on the completion only and computed with logits on target positions only
(:func:`toolkit.training.target_loss.causal_target_loss`). Batches come from
:class:`~toolkit.methods.step_by_step.collator.StepByStepCollator`; tokens/s from the trainer's own counter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from datasets import Dataset
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainingArguments
from trl import SFTConfig, SFTTrainer

from toolkit.methods.step_by_step.collator import StepByStepCollator
from toolkit.publishing import reporting
from toolkit.training.target_loss import IGNORE_INDEX, causal_target_loss

logger = logging.getLogger(__name__)

TASK_LOSSES = ("label_loss", "rationale_loss")  # logged next to the combined loss

__all__ = [
    "TASK_LOSSES",
    "StepByStepSFTTrainer",
    "StepByStepSeq2SeqTrainer",
    "TwoTaskLossMixin",
    "convert_training_args",
    "make_trainer",
    "plot_task_losses",
    "target_token_count",
]


class TwoTaskLossMixin:
    """``compute_loss = alpha * label_loss + (1 - alpha) * rationale_loss`` over :class:`StepByStepCollator` batches.

    With ``alpha == 1`` or no rationale batch, the loss is the label-task loss exactly (the rationale forward pass is
    skipped). Each task's loss is the mean over its target tokens in the global batch, whatever the number of
    processes (:meth:`task_loss`); causal students compute logits on target positions only
    (:func:`toolkit.training.target_loss.causal_target_loss`: same value and gradients as the full-logits loss).
    Evaluation reports ``eval_loss`` = the label-task loss and, when ``eval_scorer`` is given, the generation metrics
    it returns (e.g. ``eval_accuracy``), so ``metric_for_best_model="accuracy"`` selects checkpoints on validation.

    Args:
        alpha: label-task weight in [0, 1].
        eval_scorer: ``model -> {"accuracy": ...}``; runs generation on the validation rows.
    """

    # compute_loss returns per-batch means: let the Trainer divide by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, alpha: float = 0.5, eval_scorer: Callable | None = None, **kwargs):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.eval_scorer = eval_scorer
        self._task_losses: dict[str, list[float]] = {key: [] for key in TASK_LOSSES}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, label_out = self.task_loss(model, inputs["label"])
        if model.training:
            self._task_losses["label_loss"].append(float(loss.detach()))
        if "rationale" in inputs and self.alpha < 1.0:
            rationale_loss, _ = self.task_loss(model, inputs["rationale"])
            loss = self.alpha * loss + (1.0 - self.alpha) * rationale_loss
            if model.training:
                self._task_losses["rationale_loss"].append(float(rationale_loss.detach()))
        return (loss, label_out) if return_outputs else loss

    def task_loss(self, model, batch: dict) -> tuple[torch.Tensor, Any]:
        """One task's training loss: the mean over its target tokens in the global batch, and the model outputs.

        Each process holds a part of the global batch and DDP averages the gradients over processes, so a per-process
        mean would weigh a short target on one rank like a long one on another. The local token sum is divided by the
        global token count instead and multiplied by the process count: the gradient is that of the mean over every
        target token of the global batch, as in one process with the whole batch. One process: the plain mean.
        """
        loss, outputs = causal_target_loss(model, batch)
        processes = self.accelerator.num_processes
        if processes == 1 or not model.training:
            return loss, outputs
        count = target_token_count(batch["labels"], is_encoder_decoder=self.model.config.is_encoder_decoder)
        global_count = self.accelerator.gather(count.reshape(1)).sum()
        return loss * count * processes / global_count, outputs

    def _track_num_input_tokens(self, inputs):
        # The trainer's own counter (include_num_input_tokens_seen), once per task batch of {"label", "rationale"}.
        for task_batch in inputs.values():
            super()._track_num_input_tokens(task_batch)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # Attach the mean per-task losses since the last log to training logs (they go into the curves plot),
        # averaged over processes as the Trainer averages the combined loss (every process logs at the same steps).
        if "loss" in logs:
            for key, values in self._task_losses.items():
                if values:
                    local_mean = torch.tensor(sum(values) / len(values), device=self.accelerator.device)
                    logs[key] = float(self.accelerator.reduce(local_mean, reduction="mean"))
                    values.clear()
        super().log(logs, *args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, _ = causal_target_loss(model, inputs["label"])
        return loss.detach(), None, None

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, **kwargs):
        metric_key_prefix = kwargs.get("metric_key_prefix", "eval")
        output = super().evaluation_loop(dataloader, description, True, ignore_keys, **kwargs)
        if self.eval_scorer is not None:
            for key, value in self.eval_scorer(self.model).items():
                output.metrics[f"{metric_key_prefix}_{key}"] = value
        return output


class StepByStepSeq2SeqTrainer(TwoTaskLossMixin, Seq2SeqTrainer):
    """transformers' ``Seq2SeqTrainer`` with the two-task loss (T5 students, the paper's setup)."""


class StepByStepSFTTrainer(TwoTaskLossMixin, SFTTrainer):
    """TRL's ``SFTTrainer`` with the two-task loss (causal students; prompt-completion, loss on the completion)."""


def target_token_count(labels: torch.Tensor, *, is_encoder_decoder: bool) -> torch.Tensor:
    """The tokens a task's loss averages over: every label of a seq2seq batch, every next-token label of a causal one."""
    targets = labels if is_encoder_decoder else labels[:, 1:]
    return (targets != IGNORE_INDEX).sum()


def convert_training_args(training_args: TrainingArguments, cls: type, **overrides) -> TrainingArguments:
    """``training_args`` as ``cls`` (a TrainingArguments subclass), as TRL converts them; ``overrides`` applied."""
    if isinstance(training_args, cls) and not overrides:
        return training_args
    values = {**training_args.to_dict(), "hub_token": training_args.hub_token, **overrides}  # to_dict hides the token
    return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def make_trainer(
    model,
    tokenizer,
    training_args: TrainingArguments,
    *,
    is_seq2seq: bool,
    collator: StepByStepCollator,
    train_examples: Sequence[dict],
    eval_examples: Sequence[dict] | None = None,
    alpha: float = 0.5,
    eval_scorer: Callable | None = None,
):
    """The two-task trainer of a student: :class:`StepByStepSeq2SeqTrainer` or :class:`StepByStepSFTTrainer`.

    The examples stay raw text (``input``, ``label``[, ``rationale``]); the collator tokenises both tasks, so TRL's
    dataset preparation is skipped. ``training_args`` are converted to ``Seq2SeqTrainingArguments`` / ``SFTConfig``.
    """
    if is_seq2seq:
        trainer_class = StepByStepSeq2SeqTrainer
        trainer_args = convert_training_args(training_args, Seq2SeqTrainingArguments)
    else:
        trainer_class = StepByStepSFTTrainer
        skip_preparation = {"dataset_kwargs": {"skip_prepare_dataset": True}, "remove_unused_columns": False}
        trainer_args = convert_training_args(training_args, SFTConfig, **skip_preparation)
    return trainer_class(
        model=model,
        args=trainer_args,
        data_collator=collator,
        train_dataset=Dataset.from_list(list(train_examples)),
        eval_dataset=None if eval_examples is None else list(eval_examples),
        processing_class=tokenizer,
        alpha=alpha,
        eval_scorer=eval_scorer,
    )


def plot_task_losses(log_history: Sequence[dict], path) -> None:
    """The per-task (label, rationale) training losses against the step."""
    points = [{"step": e["step"], "loss": e[k], "task": k} for e in log_history for k in TASK_LOSSES if k in e]
    reporting.plot_xy(points, "step", "loss", "task", path, title="per-task loss")
