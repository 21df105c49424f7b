"""Distilling step-by-step (Hsieh et al. 2023): task prefixes, the two-task batch, the weighted two-task loss.

The student is trained multi-task on the same examples: the *label task* (``label_prefix + input`` -> label) and
the *rationale task* (``rationale_prefix + input`` -> the teacher's rationale), with
``loss = alpha * label_loss + (1 - alpha) * rationale_loss``. Only the label task runs at inference, so the
rationales cost nothing at test time. ``mode="standard"`` is plain fine-tuning (``label_source="gt"``) or plain
label distillation (``label_source="llm"``) on the bare input, with no task prefix, as in the paper's code.

The loss is a small mixin over the field's trainers: seq2seq students (T5, the paper's setup) train with
transformers' ``Seq2SeqTrainer``, causal students (SmolLM2) with TRL's ``SFTTrainer`` on prompt-completion pairs,
the loss on the completion only and computed with logits on target positions only
(:func:`toolkit.training.target_loss.causal_target_loss`). Tokens/s come from the trainer's own counter.

Data (sources, splits, which rows train which mode, the test-contamination guard) is in
:mod:`toolkit.methods.step_by_step.data`; answer matching in :mod:`toolkit.methods.step_by_step.scoring`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainingArguments
from trl import SFTConfig, SFTTrainer

from toolkit.models.students import generate, tokenize_pairs
from toolkit.publishing import reporting
from toolkit.publishing.lineage import Lineage
from toolkit.training.target_loss import IGNORE_INDEX, causal_target_loss

logger = logging.getLogger(__name__)

MODES = ("standard", "task_prefix")
LABEL_SOURCES = ("gt", "llm")
# The paper's prefixes (their code: "predict: " / "explain: "); its standard model gets no prefix.
LABEL_PREFIX = "predict: "
RATIONALE_PREFIX = "explain: "
TASK_LOSSES = ("label_loss", "rationale_loss")  # logged next to the combined loss
DESCRIPTION = (
    "Distilling step-by-step (Hsieh et al. 2023): the student learns the teacher's labels and, as a second task "
    "with its own input prefix, the teacher's rationales; loss = a·label + (1-a)·rationale. Only the label task "
    "runs at inference."
)

__all__ = [
    "DESCRIPTION",
    "LABEL_PREFIX",
    "LABEL_SOURCES",
    "MODES",
    "RATIONALE_PREFIX",
    "StepByStepCollator",
    "StepByStepSFTTrainer",
    "StepByStepSeq2SeqTrainer",
    "TwoTaskLossMixin",
    "card_lineage",
    "generate_predictions",
    "label_prefix_for",
    "make_trainer",
    "plot_task_losses",
]


def card_lineage(lineage: dict, report: dict, train_source: str, base_model: str) -> Lineage:
    """The model card's lineage: teacher, template hash, sampling, the train pool's parse rate, what was excluded."""
    teacher = report["teacher_train"]
    return Lineage(
        teacher_id=", ".join(lineage["teacher_id"]) or None,
        template_hash=", ".join(lineage["template_hash"]) or None,
        generated_dataset=train_source,
        base_model=base_model,
        extra={
            "sampling": ", ".join(lineage["sampling"]) or None,
            "teacher_parse_rate (train pool)": teacher["parse_rate"],
            "teacher_accuracy_vs_gold (parsed train rows)": teacher["teacher_accuracy_parsed"],
            "excluded_from_training": report["train_exclusions"],
        },
    )


def label_prefix_for(mode: str, label_prefix: str | None = None) -> str:
    """The label-task prefix of a run: ``label_prefix`` when given, else ``predict: `` with rationales, else none."""
    if label_prefix is not None:
        return label_prefix
    return LABEL_PREFIX if mode == "task_prefix" else ""


# ---------------------------------------------------------------------------------------------------------------
# The two-task batch and label-task generation
# ---------------------------------------------------------------------------------------------------------------
class StepByStepCollator:
    """Builds the label-task batch and (in ``task_prefix`` mode) the rationale-task batch for the same examples.

    Features are dicts with ``input`` and ``label`` (and ``rationale`` for ``task_prefix``). Output:
    ``{"label": {input_ids, attention_mask, labels}, "rationale": {...}}``, each built with
    :func:`toolkit.models.students.tokenize_pairs` (seq2seq: prefixed input -> encoder, target -> ``labels``; causal:
    prompt + completion + eos with ``labels`` = -100 on the prompt, so the loss covers the completion only) and
    padded on the right by transformers' ``DataCollatorForSeq2Seq`` (``labels`` padded with -100; T5 builds its
    decoder inputs from ``labels``).

    Args:
        tokenizer: the student's tokenizer (needs pad and eos tokens, right padding).
        is_seq2seq: encoder-decoder student.
        mode: ``standard`` (label batch only) or ``task_prefix`` (both batches).
        max_input_length: max input tokens (prefix included) per prompt.
        max_label_length: max label tokens (eos included).
        max_rationale_length: max rationale tokens (eos included).
        label_prefix: the label-task prefix; default :func:`label_prefix_for` ``(mode)`` (none in standard mode).
        rationale_prefix: the rationale-task prefix.
        chat_template: causal only — wrap the prompt in the tokenizer's chat template (instruct students).
    """

    def __init__(
        self,
        tokenizer,
        *,
        is_seq2seq: bool,
        mode: str = "task_prefix",
        max_input_length: int = 256,
        max_label_length: int = 32,
        max_rationale_length: int = 128,
        label_prefix: str | None = None,
        rationale_prefix: str = RATIONALE_PREFIX,
        chat_template: bool = False,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token")
        if tokenizer.padding_side != "right":
            raise ValueError("training batches are right-padded: load the tokenizer with padding_side='right'")
        self.tokenizer, self.is_seq2seq, self.mode = tokenizer, is_seq2seq, mode
        self.max_input_length, self.max_label_length = max_input_length, max_label_length
        self.max_rationale_length = max_rationale_length
        self.label_prefix, self.rationale_prefix = label_prefix_for(mode, label_prefix), rationale_prefix
        self.chat_template = chat_template and not is_seq2seq
        self._pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)

    def __call__(self, features: list[dict]) -> dict[str, dict]:
        inputs = [f["input"] for f in features]
        batch = {
            "label": self.encode(self.label_prefix, inputs, [f["label"] for f in features], self.max_label_length)
        }
        # Evaluation features carry no ``rationale`` key at all: only the label task is scored there.
        if self.mode == "task_prefix" and any("rationale" in f for f in features):
            missing = [i for i, f in enumerate(features) if not f.get("rationale")]
            if missing:
                raise ValueError(f"task_prefix mode needs a rationale for every example; rows {missing} have none")
            rationales = [f["rationale"] for f in features]
            batch["rationale"] = self.encode(self.rationale_prefix, inputs, rationales, self.max_rationale_length)
        return batch

    def encode(self, prefix: str, inputs: Sequence[str], targets: Sequence[str], max_target: int) -> dict:
        """Tokenise and pad one task's (``prefix + input``, target) pairs into model inputs with ``labels``."""
        rows = [{"source": prefix + x, "target": str(t)} for x, t in zip(inputs, targets)]
        feats = tokenize_pairs(
            rows,
            self.tokenizer,
            is_seq2seq=self.is_seq2seq,
            max_source_len=self.max_input_length,
            max_target_len=max_target,
            chat_template=self.chat_template,
        )
        return dict(self._pad(feats))


def generate_predictions(
    model,
    tokenizer,
    inputs: Sequence[str],
    *,
    is_seq2seq: bool,
    prefix: str,
    max_input_length: int = 256,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    chat_template: bool = False,
) -> list[str]:
    """Greedy-decode the label task for ``inputs`` (prompts built exactly as in training); first line of each.

    ``prefix`` is the label-task prefix the model was trained with (:func:`label_prefix_for`; none for standard).
    """
    texts = generate(
        model,
        tokenizer,
        [prefix + x for x in inputs],
        is_seq2seq=is_seq2seq,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        max_source_len=max_input_length,
        chat_template=chat_template and not is_seq2seq,
    )
    # Labels are one line; a student that keeps talking after the label is judged on the label line only.
    return [t.strip().split("\n")[0].strip() for t in texts]


# ---------------------------------------------------------------------------------------------------------------
# The two-task loss, on transformers' Seq2SeqTrainer (T5) and TRL's SFTTrainer (causal students)
# ---------------------------------------------------------------------------------------------------------------
class TwoTaskLossMixin:
    """``compute_loss = alpha * label_loss + (1 - alpha) * rationale_loss`` over :class:`StepByStepCollator` batches.

    With ``alpha == 1`` or no rationale batch, the loss is the label-task loss exactly (the rationale forward pass is
    skipped). Each task's loss is the mean over its target tokens; causal students compute logits on target positions
    only (:func:`toolkit.training.target_loss.causal_target_loss`: same value and gradients as the full-logits loss).
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
        self.alpha, self.eval_scorer = alpha, eval_scorer
        self._task_losses: dict[str, list[float]] = {key: [] for key in TASK_LOSSES}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, label_out = causal_target_loss(model, inputs["label"])
        if model.training:
            self._task_losses["label_loss"].append(float(loss.detach()))
        if "rationale" in inputs and self.alpha < 1.0:
            rationale_loss, _ = causal_target_loss(model, inputs["rationale"])
            loss = self.alpha * loss + (1.0 - self.alpha) * rationale_loss
            if model.training:
                self._task_losses["rationale_loss"].append(float(rationale_loss.detach()))
        return (loss, label_out) if return_outputs else loss

    def _track_num_input_tokens(self, inputs):
        # The trainer's own counter (include_num_input_tokens_seen), once per task batch of {"label", "rationale"}.
        for task_batch in inputs.values():
            super()._track_num_input_tokens(task_batch)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # Attach the mean per-task losses since the last log to training logs (they go into the curves plot).
        if "loss" in logs:
            for key, values in self._task_losses.items():
                if values:
                    logs[key] = sum(values) / len(values)
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


def _as_args(training_args: TrainingArguments, cls: type, **overrides) -> TrainingArguments:
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
        cls, args = StepByStepSeq2SeqTrainer, _as_args(training_args, Seq2SeqTrainingArguments)
    else:
        sft = {"dataset_kwargs": {"skip_prepare_dataset": True}, "remove_unused_columns": False}
        cls, args = StepByStepSFTTrainer, _as_args(training_args, SFTConfig, **sft)
    return cls(
        model=model,
        args=args,
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
