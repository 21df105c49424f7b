"""Distilling step-by-step batches: the label task and the rationale task of the same examples, tokenised together.

The student is trained multi-task on the same examples: the *label task* (``label_prefix + input`` -> label) and
the *rationale task* (``rationale_prefix + input`` -> the teacher's rationale). :class:`StepByStepCollator` builds
both batches from raw-text features; the trainers of :mod:`toolkit.methods.step_by_step.trainer` weigh their losses.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import DataCollatorForSeq2Seq

from toolkit.methods.step_by_step.config import MODES, RATIONALE_PREFIX, StepByStepConfig, label_prefix_for
from toolkit.training.student_training import tokenize_pairs
from toolkit.training.target_loss import IGNORE_INDEX

__all__ = ["StepByStepCollator"]


class StepByStepCollator:
    """Builds the label-task batch and (in ``task_prefix`` mode) the rationale-task batch for the same examples.

    Features are dicts with ``input`` and ``label`` (and ``rationale`` for ``task_prefix``). Output:
    ``{"label": {input_ids, attention_mask, labels}, "rationale": {...}}``, each built with
    :func:`toolkit.training.student_training.tokenize_pairs` (seq2seq: prefixed input -> encoder, target -> ``labels``; causal:
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
        self.tokenizer = tokenizer
        self.is_seq2seq = is_seq2seq
        self.mode = mode
        self.max_input_length = max_input_length
        self.max_label_length = max_label_length
        self.max_rationale_length = max_rationale_length
        self.label_prefix = label_prefix_for(mode, label_prefix)
        self.rationale_prefix = rationale_prefix
        self.chat_template = chat_template and not is_seq2seq
        self.pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)

    @classmethod
    def from_config(cls, tokenizer, config: StepByStepConfig, *, is_seq2seq: bool) -> StepByStepCollator:
        """The collator of a run: its mode, prefixes, length caps and prompt format."""
        return cls(
            tokenizer,
            is_seq2seq=is_seq2seq,
            mode=config.mode,
            max_input_length=config.max_input_length,
            max_label_length=config.max_label_length,
            max_rationale_length=config.max_rationale_length,
            label_prefix=config.label_task_prefix,
            rationale_prefix=config.rationale_prefix,
            chat_template=config.chat_template,
        )

    def __call__(self, features: list[dict]) -> dict[str, dict]:
        inputs = [f["input"] for f in features]
        labels = [f["label"] for f in features]
        batch = {"label": self.encode(self.label_prefix, inputs, labels, self.max_label_length)}
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
        features = tokenize_pairs(
            rows,
            self.tokenizer,
            is_seq2seq=self.is_seq2seq,
            max_source_len=self.max_input_length,
            max_target_len=max_target,
            chat_template=self.chat_template,
        )
        return dict(self.pad(features))
