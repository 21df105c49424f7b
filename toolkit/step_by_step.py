"""Distilling step-by-step (Hsieh et al. 2023): rationale data, task-prefix collator, weighted-loss trainer, scoring.

The student is trained multi-task on the same examples: the *label task* (``label_prefix + input`` -> label) and
the *rationale task* (``rationale_prefix + input`` -> the teacher's rationale), with
``loss = alpha * label_loss + (1 - alpha) * rationale_loss``. Only the label task runs at inference, so the
rationales cost nothing at test time. ``mode="standard"`` is plain fine-tuning (``label_source="gt"``) or plain
label distillation (``label_source="llm"``); ``alpha=1`` reduces ``task_prefix`` to it exactly.

Differences from the paper's code, on purpose: teacher parse failures are counted and excluded (never turned into
empty labels); model selection uses a validation split (carved deterministically from train when a task has none);
SVAMP equations are scored with :func:`toolkit.tasks.math.safe_eval` (no ``eval``); checkpoints are saved.

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
# The paper's prefixes (their code: "predict: " / "explain: ").
LABEL_PREFIX = "predict: "
RATIONALE_PREFIX = "explain: "

__all__ = [
    "LABEL_PREFIX",
    "MODES",
    "RATIONALE_PREFIX",
    "StepByStepCollator",
    "StepByStepTrainer",
    "canonical_label",
    "generate_predictions",
    "is_correct",
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
        label_prefix / rationale_prefix: the task prefixes.
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
        label_prefix: str = LABEL_PREFIX,
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
        self.label_prefix, self.rationale_prefix = label_prefix, rationale_prefix
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
    prefix: str = LABEL_PREFIX,
    max_input_length: int = 256,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    chat_template: bool = False,
) -> list[str]:
    """Greedy-decode the label task for ``inputs`` (prompts built exactly as in training); first line of each."""
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


# ---------------------------------------------------------------------------------------------------------------
# Data: rationale sources, parse statistics, splits
# ---------------------------------------------------------------------------------------------------------------
PALM_PREFIX = "palm:"
PALM_TEACHER_ID = "palm-540b (Hsieh et al. 2023 release)"


def load_rows(
    source: str,
    split: str,
    *,
    task: str,
    data_dir: str | None = None,
    input_column: str | None = None,
    label_column: str | None = None,
    svamp_equations: bool = True,
) -> tuple[list[dict], dict]:
    """Load one split as normalised rows: ``input, gold, choices, teacher_label, rationale, parse_ok``.

    Args:
        source: ``palm:<task>`` (the paper's PaLM-540B completions via :mod:`toolkit.tasks.palm`) or the path of a
            dataset saved by ``data_gen/rationales.py`` (an Arrow dir, a ``DatasetDict`` dir, or a JSONL/CSV/Parquet
            file). Rows without teacher columns are fine for evaluation (gold only).
        split: split name (``palm:`` sources and ``DatasetDict`` dirs; ignored for single-split files).
        task: one of :data:`TASKS` — decides input formatting, label normalisation and scoring.
        data_dir: data root for ``palm:`` sources (default: ``toolkit.tasks.base.data_root()``).
        input_column / label_column: override the input text / gold label columns of a saved dataset.
        svamp_equations: SVAMP targets are equations, as in the paper (gold ``equation`` column, the teacher's
            ``The answer is (84 / 2)`` expression), instead of numbers: the student writes the arithmetic and
            the safe evaluator computes it. Scoring is by value either way.

    Returns:
        ``(rows, lineage)``; lineage holds the distinct ``teacher_id`` / ``template_hash`` / ``sampling`` values.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if source.startswith(PALM_PREFIX):
        if source[len(PALM_PREFIX) :] != task:
            raise ValueError(f"source {source!r} does not match task {task!r}")
        from toolkit.tasks import palm

        kwargs = {"data_dir": data_dir} if data_dir else {}
        dataset = palm.load_palm(task, split, **kwargs)
        lineage = {"teacher_id": [PALM_TEACHER_ID], "template_hash": [], "sampling": []}
    else:
        dataset = _load_saved(source, split)
        lineage = {
            key: sorted({str(v) for v in dataset[key] if v is not None}) if key in dataset.column_names else []
            for key in ("teacher_id", "template_hash", "sampling")
        }
    rows = []
    for i, row in enumerate(dataset):
        if input_column:
            text = row[input_column]
        elif "input" in row and isinstance(row["input"], str):
            text = row["input"]
        else:
            from toolkit.tasks import palm

            text = palm.format_input(task, row)
        gold_key = label_column or next((k for k in ("label", "answer") if k in row), None)
        if gold_key is None or gold_key not in row:
            raise ValueError(f"{source} [{split}] row {i}: no gold label column (columns: {sorted(row)})")
        choices = list(row.get("choices") or [])
        if "rationale" in row or "teacher_label" in row:
            rationale, teacher_label = row.get("rationale"), row.get("teacher_label")
            parsed = bool(row.get("parse_ok", teacher_label is not None))
        elif row.get("teacher_completion") is not None:
            from toolkit.tasks import palm

            rationale, teacher_label = palm.parse_completion(task, row["teacher_completion"])
            parsed = teacher_label is not None
        else:
            rationale, teacher_label, parsed = None, None, False
        teacher_label = canonical_label(task, teacher_label, choices) if parsed else None
        gold = row[gold_key]
        if task == "svamp" and svamp_equations:
            gold = row.get("equation") or gold
            if teacher_label is not None and row.get("teacher_completion"):
                teacher_label = svamp_teacher_equation(row["teacher_completion"], teacher_label)
        rows.append(
            {
                "id": str(row.get("id", row.get("uid", i))),
                "input": str(text),
                "gold": canonical_label(task, gold, choices),
                "choices": choices,
                "teacher_label": teacher_label,
                "rationale": (rationale or "").strip() or None,
                "parse_ok": parsed and teacher_label is not None,
            }
        )
    logger.info("Loaded %d rows from %s [%s]", len(rows), source, split)
    return rows, lineage


_ANSWER_EXPR = re.compile(r"answer is\s*(.+)", re.IGNORECASE)


def svamp_teacher_equation(completion: str, number_label: str) -> str:
    """The teacher's final arithmetic (``"The answer is (84 / 2)."`` -> ``"(84 / 2)"``) when it evaluates to the
    parsed numeric label; otherwise the numeric label itself (never a target the parser did not accept)."""
    from toolkit.tasks import math as math_task

    head = re.split(r"\n\s*Q:", completion, maxsplit=1)[0]
    found = _ANSWER_EXPR.findall(head)
    if found:
        expr = found[-1].split("\n")[0].strip().rstrip(".").strip()
        try:
            if math_task.numbers_match(math_task.safe_eval(expr), number_label):
                return expr
        except (ValueError, ZeroDivisionError):
            pass
    return number_label


def _load_saved(path: str, split: str):
    from pathlib import Path

    import datasets

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"rationale dataset {path!r} not found (use a saved dataset path or 'palm:<task>')")
    if p.is_dir():
        loaded = datasets.load_from_disk(str(p))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{path} has splits {list(loaded)}, not {split!r}")
            return loaded[split]
        return loaded
    from toolkit.tasks.base import load_local

    return load_local(str(p))


def teacher_stats(task: str, rows: Sequence[dict]) -> dict:
    """Parse rate and teacher accuracy vs gold (over parsed rows, and over all rows with failures as wrong)."""
    n = len(rows)
    parsed = [r for r in rows if r["parse_ok"]]
    correct = sum(is_correct(task, r["teacher_label"], r["gold"], r["choices"]) for r in parsed)
    return {
        "n": n,
        "n_parsed": len(parsed),
        "n_parse_failures": n - len(parsed),
        "parse_rate": len(parsed) / n if n else 0.0,
        "teacher_accuracy_parsed": correct / len(parsed) if parsed else None,
        "teacher_accuracy_all": correct / n if n else None,
    }


def carve_dev(rows: Sequence[dict], dev_size: float | int, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministically split ``rows`` into (train, dev); ``dev_size`` is a fraction (<1) or a row count."""
    import random

    n_dev = int(round(dev_size * len(rows))) if dev_size < 1 else int(dev_size)
    if not 0 < n_dev < len(rows):
        raise ValueError(f"dev_size={dev_size} gives {n_dev} dev rows out of {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    dev = set(order[:n_dev])
    return [r for i, r in enumerate(rows) if i not in dev], [r for i, r in enumerate(rows) if i in dev]


def subsample(rows: Sequence[dict], fraction: float = 1.0, max_rows: int | None = None, seed: int = 0) -> list[dict]:
    """Seeded subset: the first ``ceil(fraction * n)`` of one fixed shuffle (nested across fractions), capped."""
    import math
    import random

    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    keep = order[: math.ceil(fraction * len(rows))]
    if max_rows is not None:
        keep = keep[:max_rows]
    return [rows[i] for i in sorted(keep)]


def build_train_examples(
    rows: Sequence[dict], *, mode: str, label_source: str, exclude_parse_failures: bool = True
) -> tuple[list[dict], dict]:
    """Turn normalised rows into training features ``{input, label, rationale}``; exclusions are counted.

    Rows whose teacher output did not parse (no teacher label) or has an empty rationale are excluded when
    ``label_source="llm"`` or ``mode="task_prefix"`` (they have no target), and by default in every mode, so that
    standard and task_prefix runs train on exactly the same examples.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
    must_exclude = exclude_parse_failures or mode == "task_prefix" or label_source == "llm"
    examples, no_label, no_rationale = [], 0, 0
    for r in rows:
        if must_exclude and not r["parse_ok"]:
            no_label += 1
            continue
        if must_exclude and not r["rationale"]:
            no_rationale += 1
            continue
        label = r["teacher_label"] if label_source == "llm" else r["gold"]
        if label is None:
            raise ValueError(f"row {r['id']}: no {label_source} label")
        ex = {"input": r["input"], "label": label}
        if mode == "task_prefix":
            ex["rationale"] = r["rationale"]
        examples.append(ex)
    if not examples:
        raise ValueError("no training examples left after excluding parse failures")
    stats = {
        "n_rows": len(rows),
        "n_used": len(examples),
        "excluded_parse_failure": no_label,
        "excluded_empty_rationale": no_rationale,
    }
    logger.info("Training examples: %s", stats)
    return examples, stats
