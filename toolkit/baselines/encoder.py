"""Fine-tuned encoder baselines (the paper's RoBERTa stand-in): sequence and token classification.

Two plain ``transformers.Trainer`` runs that every classification recipe can put next to its LLM student:

- :func:`finetune_sequence_classifier` — ``AutoModelForSequenceClassification`` on ``text`` / ``label``
  (topic, intent, sentiment ...) → accuracy, macro-F1, timings and per-row predictions.
- :func:`finetune_token_classifier` — ``AutoModelForTokenClassification`` on word ``tokens`` / BIO ``slot_tags``
  → span slot F1 (first sub-word of each word carries the word's label, the usual BERT-NER scheme).

Both take the same budget knobs (:class:`EncoderBudget`), so a recipe can give the encoder exactly the budget it
gives its LLM student; ``model_name_or_path`` accepts ``local:minilm-l6`` as well as paths and Hub ids::

    result = finetune_sequence_classifier("local:minilm-l6", train, dev, test, label_names=names, max_steps=200)

Under a multi-process launch (``accelerate launch``) the ``Trainer`` trains data-parallel: every rank must call
these functions, ``batch_size`` stays the *global* batch (each rank takes ``batch_size / num_processes`` rows of it),
and ``trainer.predict`` gathers every rank's predictions back in order, so a 2-process run sees the same batches
as a 1-process run. The results name the wrapper the Trainer used (``DistributedDataParallel`` under DDP).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from toolkit.configs import apply_cpu_safe_defaults
from toolkit.distributed import num_processes
from toolkit.evaluation.label_scoring import label_scores
from toolkit.evaluation.metrics import slot_f1
from toolkit.meter import Meter
from toolkit.models.loading import resolve_model
from toolkit.training.budget import tokens_trained

logger = logging.getLogger(__name__)

__all__ = ["EncoderBudget", "finetune_sequence_classifier", "finetune_token_classifier", "resolve_label_names"]


def _resolve_name(name_or_path: str) -> str:
    if str(name_or_path).startswith("local:"):
        return resolve_model(name_or_path)
    return str(name_or_path)


def resolve_label_names(datasets: Sequence[Any], label_column: str, label_names: Sequence[str] | None) -> list[str]:
    """Label vocabulary: explicit ``label_names``, else the ``ClassLabel`` names, else sorted string labels.

    Raises:
        ValueError: when labels are ints without names, or the column is missing.
    """
    if label_names is not None:
        return [str(n) for n in label_names]
    first = datasets[0]
    if label_column not in first.column_names:
        raise ValueError(f"label column {label_column!r} not in dataset columns {first.column_names}")
    feature = first.features[label_column]
    if hasattr(feature, "names"):
        return list(feature.names)
    values = {v for ds in datasets if ds is not None for v in ds[label_column]}
    if any(not isinstance(v, str) for v in values):
        raise ValueError(f"column {label_column!r} holds non-string labels without ClassLabel names: pass label_names")
    return sorted(values)


def _label_ids(ds, label_column: str, names: list[str]) -> list[int]:
    index = {n: i for i, n in enumerate(names)}
    feature = ds.features[label_column]
    out = []
    for value in ds[label_column]:
        if isinstance(value, str):
            if value not in index:
                raise ValueError(f"label {value!r} is not among the {len(names)} known labels")
            out.append(index[value])
        else:
            # ClassLabel ints are indices into feature.names; re-map in case label_names reorders them.
            name = feature.names[value] if hasattr(feature, "names") else names[value]
            out.append(index[name])
    return out


def _gold_names(ds, label_column: str, names: list[str]) -> list[str]:
    """Gold labels of a scored split as names; labels train never showed stay as they are (scored as errors)."""
    feature = ds.features[label_column]
    own = getattr(feature, "names", None)
    return [v if isinstance(v, str) else (own[v] if own else names[v]) for v in ds[label_column]]


def _rows_seen(trainer) -> int:
    args = trainer.args
    return (
        trainer.state.global_step
        * args.per_device_train_batch_size
        * args.gradient_accumulation_steps
        * max(1, args.world_size)
    )


@dataclass
class EncoderBudget:
    """The training budget of one encoder run; ``max_steps > 0`` wins over ``epochs`` (as in ``TrainingArguments``).

    ``output_dir`` is the trainer's scratch dir (a temp dir when ``None``; no checkpoints are saved); ``report_to``
    the trainer integrations (``tensorboard`` logs under ``output_dir``; default none). Texts are truncated to
    ``max_length`` tokens. ``batch_size`` is the global batch: with several processes each takes an equal part of it.
    """

    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    seed: int = 42
    warmup_ratio: float = 0.0
    logging_steps: int = 10
    output_dir: str | None = None
    report_to: str | list[str] | None = None

    def per_device_batch_size(self) -> int:
        """This process's part of the global ``batch_size``.

        Raises:
            ValueError: ``batch_size`` does not split evenly over the processes.
        """
        processes = num_processes()
        if self.batch_size % processes:
            raise ValueError(f"batch_size {self.batch_size} does not split evenly over {processes} processes")
        return self.batch_size // processes

    def training_args(self, scratch_dir: str) -> TrainingArguments:
        args = TrainingArguments(
            output_dir=self.output_dir or scratch_dir,
            num_train_epochs=self.epochs,
            max_steps=self.max_steps if self.max_steps and self.max_steps > 0 else -1,
            learning_rate=self.learning_rate,
            per_device_train_batch_size=self.per_device_batch_size(),
            per_device_eval_batch_size=max(self.per_device_batch_size(), 32),
            warmup_steps=self.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of total steps
            logging_steps=self.logging_steps,
            save_strategy="no",
            eval_strategy="no",
            report_to=self.report_to or [],  # tensorboard: <output_dir>/runs/<date>_<host>
            seed=self.seed,
            dataloader_num_workers=0,
        )
        return apply_cpu_safe_defaults(args)


def _train(trainer, train_rows) -> tuple[Any, dict[str, Any]]:
    """Train and measure: ``(TrainOutput, compute)`` with the keys both runs report."""
    with Meter() as meter:
        out = trainer.train()
    return out, {
        "train_seconds": meter.wall_s,
        "train_cpu_seconds": meter.cpu_s,
        "train_peak_rss_mb": meter.peak_rss_mb,
        "train_steps": trainer.state.global_step,
        "train_tokens": tokens_trained([len(r["input_ids"]) for r in train_rows], _rows_seen(trainer)),
        "log_history": list(trainer.state.log_history),
        "wrapper": type(trainer.model_wrapped).__name__,
    }


def _check_splits(train, test):
    if train is None or len(train) == 0:
        raise ValueError("train dataset is empty")
    if test is None or len(test) == 0:
        raise ValueError("test dataset is empty")


def finetune_sequence_classifier(
    model_name_or_path: str,
    train,
    dev,
    test,
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    **budget: Any,
) -> dict[str, Any]:
    """Fine-tune an encoder with a fresh classification head and score it on ``test`` (and ``dev``).

    Args:
        model_name_or_path: Encoder checkpoint (``local:minilm-l6``, a path, or a Hub id).
        train, dev, test: ``datasets.Dataset`` objects with ``text_column`` and ``label_column`` (``ClassLabel`` ints
            or strings). ``dev`` may be ``None``; it is only scored (the budget is fixed, no model selection).
        label_names: Label vocabulary; defaults to train's ``ClassLabel`` names or the sorted string labels *of
            train* (test labels never enter it; a test label train never shows is scored as an error).
        **budget: :class:`EncoderBudget` fields (epochs / max_steps, learning_rate, batch_size, max_length, seed,
            warmup_ratio, logging_steps, output_dir, report_to).

    Returns:
        ``{"accuracy", "macro_f1", "dev_accuracy", "dev_macro_f1", "train_seconds", "train_cpu_seconds",
        "train_steps", "train_tokens", "infer_seconds", "train_samples_per_second", "predictions" (label names,
        aligned with test), "golds", "labels", "num_train", "num_test", "log_history", "wrapper"}``. ``dev_*`` are ``None`` when
        ``dev`` is ``None``. Accuracy and macro-F1 follow :func:`toolkit.evaluation.label_scoring.label_scores` (macro-F1 over
        the train label set), the same definition as the LLM students'.
    """
    budget_config = EncoderBudget(**budget)
    _check_splits(train, test)
    for name, ds in (("train", train), ("dev", dev), ("test", test)):
        if ds is not None and text_column not in ds.column_names:
            raise ValueError(f"{name} split has no {text_column!r} column (columns: {ds.column_names})")
    names = resolve_label_names([train], label_column, label_names)
    path = _resolve_name(model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(budget_config.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        ignore_mismatched_sizes=True,  # a checkpoint's own head (if any) has another label count
    )
    if tokenizer.pad_token is None:  # decoder-only backbones (Llama) have no pad token
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id

    def encode(ds):
        enc = tokenizer(list(ds[text_column]), truncation=True, max_length=budget_config.max_length)
        rows = [{k: enc[k][i] for k in enc} for i in range(len(ds))]
        for row, y in zip(rows, _label_ids(ds, label_column, names)):
            row["labels"] = y
        return rows

    train_rows = encode(train)
    with tempfile.TemporaryDirectory() as tmp:
        args = budget_config.training_args(tmp)
        trainer = Trainer(
            model=model, args=args, train_dataset=train_rows, data_collator=DataCollatorWithPadding(tokenizer)
        )
        train_out, compute = _train(trainer, train_rows)

        def encode_inputs(ds):
            enc = tokenizer(list(ds[text_column]), truncation=True, max_length=budget_config.max_length)
            return [{k: enc[k][i] for k in enc} for i in range(len(ds))]

        def predict(ds):
            start = time.perf_counter()
            logits = trainer.predict(encode_inputs(ds)).predictions
            ids = np.asarray(logits).argmax(-1).tolist()
            return [names[i] for i in ids], time.perf_counter() - start

        preds, infer_seconds = predict(test)
        golds = _gold_names(test, label_column, names)
        scores = label_scores(preds, golds, names)
        result: dict[str, Any] = {
            "accuracy": scores["accuracy"],
            "macro_f1": scores["macro_f1"],
            "dev_accuracy": None,
            "dev_macro_f1": None,
        }
        if dev is not None and len(dev):
            dev_preds, _ = predict(dev)
            dev_scores = label_scores(dev_preds, _gold_names(dev, label_column, names), names)
            result["dev_accuracy"] = dev_scores["accuracy"]
            result["dev_macro_f1"] = dev_scores["macro_f1"]
    result.update(
        compute,
        infer_seconds=infer_seconds,
        train_samples_per_second=train_out.metrics.get("train_samples_per_second"),
        predictions=preds,
        golds=golds,
        labels=names,
        num_train=len(train),
        num_test=len(test),
    )
    logger.info(
        "encoder %s: accuracy=%.4f macro_f1=%.4f (train %.1fs, infer %.1fs)",
        model_name_or_path,
        result["accuracy"],
        result["macro_f1"],
        compute["train_seconds"],
        infer_seconds,
    )
    return result


def finetune_token_classifier(
    model_name_or_path: str,
    train,
    dev,
    test,
    *,
    tokens_column: str = "tokens",
    tags_column: str = "slot_tags",
    tag_names: Sequence[str] | None = None,
    **budget: Any,
) -> dict[str, Any]:
    """Fine-tune an encoder for BIO slot tagging over pre-split words and score span slot F1 on ``test``.

    Only the first sub-word of each word is trained and read (other sub-words get label ``-100``); words cut off by
    ``max_length`` are predicted ``O`` so predictions stay aligned with the gold words.

    Args:
        model_name_or_path: Encoder checkpoint (``local:minilm-l6``, a path, or a Hub id). Needs a *fast* tokenizer
            (``word_ids()``).
        train, dev, test: Datasets with ``tokens_column`` (list of words) and ``tags_column`` (BIO tags per word).
        tag_names: Tag vocabulary; defaults to the sorted tags *of train* (``O`` first), so test tags never enter
            the head. A scored tag train never shows cannot be predicted: its spans count as misses.
        **budget: :class:`EncoderBudget` fields, as in :func:`finetune_sequence_classifier`.

    Returns:
        ``{"slot_f1", "tag_accuracy", "dev_slot_f1", "train_seconds", "train_cpu_seconds", "train_steps",
        "train_tokens", "infer_seconds", "predictions" (tag lists), "golds", "tags", "num_train", "num_test",
        "log_history"}``.
    """
    budget_config = EncoderBudget(**budget)
    _check_splits(train, test)
    splits = [ds for ds in (train, dev, test) if ds is not None]
    for ds in splits:
        for col in (tokens_column, tags_column):
            if col not in ds.column_names:
                raise ValueError(f"dataset has no {col!r} column (columns: {ds.column_names})")
    if tag_names is None:
        seen = {t for tags in train[tags_column] for t in tags}
        tag_names = ["O"] + sorted(seen - {"O"})
    tag_names = list(tag_names)
    index = {t: i for i, t in enumerate(tag_names)}
    path = _resolve_name(model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{model_name_or_path}: token classification needs a fast tokenizer (word_ids())")
    torch.manual_seed(budget_config.seed)
    model = AutoModelForTokenClassification.from_pretrained(
        path,
        num_labels=len(tag_names),
        id2label=dict(enumerate(tag_names)),
        label2id=index,
        ignore_mismatched_sizes=True,
    )

    def encode(ds, is_train=False):
        enc = tokenizer(
            list(ds[tokens_column]), is_split_into_words=True, truncation=True, max_length=budget_config.max_length
        )
        rows, first_positions = [], []
        for i, tags in enumerate(ds[tags_column]):
            if len(tags) != len(ds[i][tokens_column]):
                raise ValueError(f"row {i}: {len(ds[i][tokens_column])} tokens but {len(tags)} tags")
            labels, firsts, prev = [], {}, None
            for pos, wid in enumerate(enc.word_ids(i)):
                if wid is None or wid == prev:
                    labels.append(-100)
                else:
                    if is_train and tags[wid] not in index:
                        raise ValueError(f"train row {i}: tag {tags[wid]!r} is not among the {len(index)} known tags")
                    labels.append(index.get(tags[wid], -100))  # a scored split's unseen tag: never a target
                    firsts[wid] = pos
                prev = wid
            rows.append({k: enc[k][i] for k in enc} | {"labels": labels})
            first_positions.append(firsts)
        return rows, first_positions

    train_rows, _ = encode(train, is_train=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = budget_config.training_args(tmp)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_rows,
            data_collator=DataCollatorForTokenClassification(tokenizer),
        )
        _, compute = _train(trainer, train_rows)

        def predict(ds):
            start = time.perf_counter()
            rows, firsts = encode(ds)
            logits = trainer.predict(rows).predictions
            ids = np.asarray(logits).argmax(-1)
            preds = []
            for i, words in enumerate(ds[tokens_column]):
                preds.append(
                    [tag_names[int(ids[i][firsts[i][w]])] if w in firsts[i] else "O" for w in range(len(words))]
                )
            return preds, time.perf_counter() - start

        preds, infer_seconds = predict(test)
        golds = [list(t) for t in test[tags_column]]
        dev_f1 = None
        if dev is not None and len(dev):
            dev_preds, _ = predict(dev)
            dev_f1 = slot_f1(dev_preds, [list(t) for t in dev[tags_column]])["f1"]
    n_tags = sum(len(g) for g in golds)
    result = {
        "slot_f1": slot_f1(preds, golds)["f1"],
        "tag_accuracy": sum(p == g for ps, gs in zip(preds, golds) for p, g in zip(ps, gs)) / max(n_tags, 1),
        "dev_slot_f1": dev_f1,
        **compute,
        "infer_seconds": infer_seconds,
        "predictions": preds,
        "golds": golds,
        "tags": tag_names,
        "num_train": len(train),
        "num_test": len(test),
    }
    logger.info(
        "token tagger %s: slot_f1=%.4f (train %.1fs)", model_name_or_path, result["slot_f1"], compute["train_seconds"]
    )
    return result
