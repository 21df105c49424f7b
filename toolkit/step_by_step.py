"""Distilling step-by-step (Hsieh et al. 2023): answer matching, task-prefix collator, weighted-loss trainer.

The student is trained multi-task on the same examples: the *label task* (``label_prefix + input`` -> label) and
the *rationale task* (``rationale_prefix + input`` -> the teacher's rationale), with
``loss = alpha * label_loss + (1 - alpha) * rationale_loss``. Only the label task runs at inference, so the
rationales cost nothing at test time. ``mode="standard"`` is plain fine-tuning (``label_source="gt"``) or plain
label distillation (``label_source="llm"``) on the bare input, with no task prefix, as in the paper's code.

Data (sources, splits, which rows train which mode, the test-contamination guard) is in
:mod:`toolkit.step_by_step_data`. Differences from the paper's code, on purpose: teacher parse failures are counted
and never turned into empty labels (kept only where they are valid rows: gold-label standard training); model
selection uses a validation split (carved deterministically from train when a task has none); SVAMP equations are
scored with :func:`toolkit.tasks.math.safe_eval` (no ``eval``); checkpoints are saved.

Students may be seq2seq (T5, the paper's setup) or causal LMs (SmolLM2; the loss covers the completion only).
"""

from __future__ import annotations

import difflib
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

TASKS = ("cqa", "svamp", "anli1", "esnli")
NLI_LABELS = ("entailment", "neutral", "contradiction")
MODES = ("standard", "task_prefix")
LABEL_SOURCES = ("gt", "llm")
# The paper's prefixes (their code: "predict: " / "explain: "); its standard model gets no prefix.
LABEL_PREFIX = "predict: "
RATIONALE_PREFIX = "explain: "


def label_prefix_for(mode: str, label_prefix: str | None = None) -> str:
    """The label-task prefix of a run: ``label_prefix`` when given, else ``predict: `` with rationales, else none."""
    if label_prefix is not None:
        return label_prefix
    return LABEL_PREFIX if mode == "task_prefix" else ""


__all__ = [
    "LABEL_PREFIX",
    "MODES",
    "RATIONALE_PREFIX",
    "StepByStepCollator",
    "StepByStepTrainer",
    "canonical_label",
    "generate_predictions",
    "is_correct",
    "label_prefix_for",
    "match_choice",
    "nli_label",
    "score_predictions",
]


# ---------------------------------------------------------------------------------------------------------------
# Answer matching
# ---------------------------------------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


_LETTER = re.compile(r"^\s*\(?([a-e])\)(?:\s+|$)", re.IGNORECASE)
# Below this difflib ratio a generated answer is considered to name no choice (counted wrong).
FUZZY_CHOICE_THRESHOLD = 0.6


def match_choice(pred: str | None, choices: Sequence[str]) -> int | None:
    """Map generated text to the index of a multiple-choice option (CQA), or ``None``.

    Rules, first hit wins: exact (case/punctuation-insensitive) match; a leading letter ``(c)`` / ``c)`` (its
    remaining text must not name a *different* choice); the longest choice contained in the text as whole words;
    the text contained in exactly one choice; otherwise the closest choice by difflib ratio when it reaches
    ``FUZZY_CHOICE_THRESHOLD``.
    """
    if pred is None or not choices:
        return None
    norm_choices = [_norm(c) for c in choices]
    text = _norm(pred)
    if text in norm_choices:
        return norm_choices.index(text)
    letter = _LETTER.match(str(pred))
    if letter:
        index = "abcde".index(letter.group(1).lower())
        rest = _norm(str(pred)[letter.end() :])
        if index < len(choices) and (not rest or rest == norm_choices[index] or rest not in norm_choices):
            return index
        if rest in norm_choices:
            return norm_choices.index(rest)
    if not text:
        return None
    padded = f" {text} "
    contained = [i for i, c in enumerate(norm_choices) if c and f" {c} " in padded]
    if contained:
        return max(contained, key=lambda i: len(norm_choices[i]))
    containing = [i for i, c in enumerate(norm_choices) if f" {text} " in f" {c} "]
    if len(containing) == 1:
        return containing[0]
    ratios = [difflib.SequenceMatcher(None, text, c).ratio() for c in norm_choices]
    best = max(range(len(ratios)), key=ratios.__getitem__)
    return best if ratios[best] >= FUZZY_CHOICE_THRESHOLD else None


def nli_label(pred: str | None) -> str | None:
    """The NLI label a generated text names (the earliest of entailment/neutral/contradiction), or ``None``."""
    if pred is None:
        return None
    text = _norm(pred)
    hits = [(m.start(), label) for label in NLI_LABELS for m in [re.search(rf"\b{label}\b", text)] if m]
    return min(hits)[1] if hits else None


def _numbers_match(pred: str | None, gold: str) -> bool:
    """SVAMP: both sides evaluated by the safe evaluator; equality per ``toolkit.tasks.math.numbers_match``."""
    from toolkit.tasks import math as math_task

    if pred is None:
        return False
    expr = str(pred).split("=")[0].strip()  # "(10 * 45) = 450" -> score the equation, not the stated result
    try:
        value = math_task.safe_eval(expr)
        gold_value = math_task.safe_eval(str(gold))
    except Exception:  # noqa: BLE001 - any unparsable / invalid expression is simply a wrong answer
        return False
    if value is None or gold_value is None:
        return False
    return bool(math_task.numbers_match(value, gold_value))


def is_correct(task: str, pred: str | None, gold: Any, choices: Sequence[str] | None = None) -> bool:
    """Whether a prediction answers a row correctly (per-task matching, see the module docstring)."""
    if task == "svamp":
        return _numbers_match(pred, gold)
    if task == "cqa":
        if not choices:
            raise ValueError("CQA scoring needs the row's answer choices")
        gold_index = match_choice(str(gold), choices)
        return gold_index is not None and match_choice(pred, choices) == gold_index
    if task in ("anli1", "esnli"):
        return nli_label(pred) == canonical_label(task, gold)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def canonical_label(task: str, value: Any, choices: Sequence[str] | None = None) -> str | None:
    """Normalise a gold or teacher label into the target text the student learns.

    NLI integer ids map to ``entailment/neutral/contradiction``; a CQA label naming a choice (``"(c) wooded
    area"``) becomes that choice's text, so gt and llm targets share one format; SVAMP keeps its expression.
    Returns ``None`` for a missing label.
    """
    if value is None:
        return None
    if task in ("anli1", "esnli"):
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(NLI_LABELS):
                raise ValueError(f"NLI label id {value} outside 0..2")
            return NLI_LABELS[value]
        return nli_label(str(value)) or str(value).strip() or None
    if task == "cqa" and choices:
        index = match_choice(str(value), choices)
        return choices[index] if index is not None else (str(value).strip() or None)
    return str(value).strip() or None


def score_predictions(task: str, preds: Sequence[str | None], rows: Sequence[dict]) -> tuple[float, list[bool]]:
    """Accuracy of ``preds`` against ``rows`` (each with ``gold`` and, for CQA, ``choices``)."""
    if len(preds) != len(rows):
        raise ValueError(f"{len(preds)} predictions for {len(rows)} rows")
    correct = [is_correct(task, p, r["gold"], r.get("choices")) for p, r in zip(preds, rows)]
    return (sum(correct) / len(correct) if correct else 0.0), correct


# ---------------------------------------------------------------------------------------------------------------
# The two-task collator and label-task generation (tokenisation / padding / decoding from toolkit.students)
# ---------------------------------------------------------------------------------------------------------------
class StepByStepCollator:
    """Builds the label-task batch and (in ``task_prefix`` mode) the rationale-task batch for the same examples.

    Features are dicts with ``input`` and ``label`` (and ``rationale`` for ``task_prefix``). Output:
    ``{"label": {input_ids, attention_mask, labels}, "rationale": {...}}``, each built with
    :func:`toolkit.students.tokenize_pairs` (seq2seq: prefixed input -> encoder, target -> ``labels``; causal:
    ``prompt + target + eos`` with ``labels`` = -100 on the prompt, so the loss covers the completion only) and
    padded by :class:`toolkit.students.PairCollator`.

    Args:
        tokenizer: the student's tokenizer (needs pad and eos tokens).
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
        from toolkit.students import PairCollator

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token")
        self.tokenizer, self.is_seq2seq, self.mode = tokenizer, is_seq2seq, mode
        self.max_input_length, self.max_label_length = max_input_length, max_label_length
        self.max_rationale_length = max_rationale_length
        self.label_prefix, self.rationale_prefix = label_prefix_for(mode, label_prefix), rationale_prefix
        self.chat_template = chat_template and not is_seq2seq
        self._pad = PairCollator(pad_token_id=tokenizer.pad_token_id, padding_side="right")

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
        from toolkit.students import tokenize_pairs

        rows = [{"source": prefix + x, "target": str(t)} for x, t in zip(inputs, targets)]
        feats = tokenize_pairs(
            rows,
            self.tokenizer,
            is_seq2seq=self.is_seq2seq,
            max_source_len=self.max_input_length,
            max_target_len=max_target,
            chat_template=self.chat_template,
        )
        return self._pad(feats)


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
    from toolkit.students import generate

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
# Trainer
# ---------------------------------------------------------------------------------------------------------------
def _trainer_base():
    from transformers import Trainer

    return Trainer


class StepByStepTrainer(_trainer_base()):
    """``Trainer`` with the step-by-step loss ``alpha * label_loss + (1 - alpha) * rationale_loss``.

    Batches come from :class:`StepByStepCollator`. With ``alpha == 1`` or no rationale batch, the loss is the
    label-task loss exactly (the rationale forward pass is skipped). Evaluation reports ``eval_loss`` = the
    label-task loss against the split's labels and, when ``eval_scorer`` is given, the generation metrics it
    returns (e.g. ``eval_accuracy``), so ``metric_for_best_model="accuracy"`` selects checkpoints on validation.

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
        self._task_losses: dict[str, list[float]] = {"label_loss": [], "rationale_loss": []}
        self.train_step_seconds = 0.0
        self.train_tokens = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        label_out = model(**inputs["label"])
        loss = label_out.loss
        if "rationale" in inputs and self.alpha < 1.0:
            rationale_out = model(**inputs["rationale"])
            loss = self.alpha * label_out.loss + (1.0 - self.alpha) * rationale_out.loss
            if model.training:
                self._task_losses["rationale_loss"].append(float(rationale_out.loss.detach()))
        if model.training:
            self._task_losses["label_loss"].append(float(label_out.loss.detach()))
        return (loss, label_out) if return_outputs else loss

    def training_step(self, model, inputs, *args, **kwargs):
        # Count real (non-pad) tokens of training batches only (the collator also serves evaluation batches).
        seq2seq = bool(getattr(getattr(self.model, "config", None), "is_encoder_decoder", False))
        for sub in inputs.values():
            self.train_tokens += int(sub["attention_mask"].sum())
            if seq2seq:  # decoder tokens are work on top of the encoder's
                self.train_tokens += int((sub["labels"] != -100).sum())
        start = time.perf_counter()
        try:
            return super().training_step(model, inputs, *args, **kwargs)
        finally:
            self.train_step_seconds += time.perf_counter() - start

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # Attach the mean per-task losses since the last log to training logs (they go into the curves plot).
        if "loss" in logs:
            for key, values in self._task_losses.items():
                if values:
                    logs[key] = sum(values) / len(values)
                    values.clear()
        super().log(logs, *args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        import torch

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = model(**inputs["label"]).loss.detach()
        return loss, None, None

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, **kwargs):
        metric_key_prefix = kwargs.get("metric_key_prefix", "eval")
        output = super().evaluation_loop(dataloader, description, True, ignore_keys, **kwargs)
        if self.eval_scorer is not None:
            for key, value in self.eval_scorer(self.model).items():
                output.metrics[f"{metric_key_prefix}_{key}"] = value
        return output
