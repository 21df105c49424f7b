"""Encoder baselines for the multi-task recipe: one fine-tuned encoder model per task, scored like the LLM students.

The encoder is the paper's RoBERTa stand-in (``local:minilm-l6`` offline). It trains on the same rows as the LoRA
models, its label predictions go through the same :func:`toolkit.label_scoring.label_scores` (strict = snapped for an
argmax, macro-F1 over the train label set), and each row reports the same compute columns.
"""

from __future__ import annotations

import os
from typing import Any

from toolkit.encoder_baseline import finetune_sequence_classifier, finetune_token_classifier
from toolkit.tracking import report_to_list

__all__ = ["run_encoder_baselines"]


def run_encoder_baselines(
    model_name_or_path: str,
    splits,
    training_args,
    learning_rate: float = 1e-4,
    steps: dict[str, int] | None = None,
) -> dict:
    """Encoder baselines for a recipe's task list, on the same rows as its LLM models.

    ``topic`` and ``intent`` get a sequence classifier, ``slots`` a token classifier, ``intent_slots`` both (the
    two-model setup, scored with a joint exact match). Each model trains ``training_args.max_steps`` steps (or
    ``num_train_epochs``) at ``per_device_train_batch_size`` — the per-model budget of the LLM students — unless
    ``steps`` gives its own count (the equal-total-budget variant, see :mod:`toolkit.train_budget`).

    Args:
        model_name_or_path: Encoder checkpoint (``local:minilm-l6``).
        splits: Objects with ``name``, ``task``, ``train``, ``test``, ``labels`` (``toolkit.multitask.TaskSplits``).
        training_args: The recipe's ``TrainingArguments`` (budget, seed and ``report_to`` are read from it; logged
            models write to ``<output_dir>/baselines/encoder_<model>/runs/``).
        learning_rate: Encoder learning rate (encoders want a larger one than LoRA-on-LLM defaults suggest).
        steps: ``{model_name: max_steps}`` keyed like :func:`toolkit.train_budget.model_parts` (``20ng:topic``,
            ``snips:intent``, ``snips:slots``); ``None`` = the per-model budget above.

    Returns:
        ``{"results": {task_name: metrics}, "predictions": [rows], "summary": {...}}`` with metric keys named like
        ``toolkit.multitask.score_task`` (``topic_accuracy``, ``topic_accuracy_snapped``, ``macro_f1``,
        ``intent_accuracy``, ``slot_f1``, ``exact_match`` ...; an argmax is always a label, so snapped = strict and
        ``*_invalid`` = 0) plus the compute of the task's models (``train_seconds``, ``train_cpu_seconds``,
        ``train_steps``, ``train_tokens`` — encoder word pieces), so one table can hold both.
    """
    from toolkit.label_scoring import label_scores
    from toolkit.train_budget import model_parts

    budget = {
        "epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "batch_size": training_args.per_device_train_batch_size,
        "seed": training_args.seed,
        "learning_rate": learning_rate,
        "max_length": 256,  # topic texts are already cut to the LLM's token budget; this keeps all of them
    }
    model_names = {(entry, task): name for name, task, entry in model_parts(splits)}
    results, predictions = {}, []

    def with_text(ds):
        return ds if "text" in ds.column_names else ds.map(lambda r: {"text": " ".join(r["tokens"])})

    report_to = report_to_list(training_args.report_to)

    def budget_for(sp, task):
        name = model_names[(sp.name, task if sp.task == "intent_slots" else sp.task)]
        args = budget | ({"max_steps": steps[name]} if steps is not None else {})
        if report_to:  # one folder (one TensorBoard run) per model, next to the single-task baselines'
            folder = f"encoder_{name.replace(':', '_')}"
            args |= {
                "report_to": report_to,
                "output_dir": os.path.join(training_args.output_dir, "baselines", folder),
                "logging_steps": training_args.logging_steps,  # curves as fine as the LoRA models'
            }
        return args

    for sp in splits:
        metrics: dict[str, Any] = {"n": len(sp.test)}
        cls = tag = None
        if sp.task in ("topic", "intent", "intent_slots"):
            column = "label" if sp.task == "topic" else "intent"
            cls = finetune_sequence_classifier(
                model_name_or_path,
                with_text(sp.train),
                None,
                with_text(sp.test),
                label_column=column,
                label_names=sp.labels,
                **budget_for(sp, "intent"),
            )
            key = "topic" if sp.task == "topic" else "intent"
            scores = label_scores(cls["predictions"], cls["golds"], cls["labels"])
            metrics[f"{key}_accuracy"] = scores["accuracy"]
            metrics[f"{key}_accuracy_snapped"] = scores["accuracy_snapped"]
            metrics[f"{key}_invalid"] = scores["invalid"]
            metrics["macro_f1"] = scores["macro_f1"]
        if sp.task in ("slots", "intent_slots"):
            tag = finetune_token_classifier(model_name_or_path, sp.train, None, sp.test, **budget_for(sp, "slots"))
            metrics["slot_f1"] = tag["slot_f1"]
        compute = dict.fromkeys(
            ("train_seconds", "train_cpu_seconds", "train_steps", "train_tokens", "infer_seconds"), 0
        )
        for out in (cls, tag):
            for key in compute if out is not None else ():
                compute[key] += out[key]
        peaks = [out["train_peak_rss_mb"] for out in (cls, tag) if out is not None and "train_peak_rss_mb" in out]
        if peaks:
            compute["train_peak_rss_mb"] = max(peaks)
        if cls is not None and tag is not None:
            hits = sum(
                p == g and pt == gt
                for p, g, pt, gt in zip(cls["predictions"], cls["golds"], tag["predictions"], tag["golds"])
            )
            metrics["exact_match"] = hits / len(sp.test)
        for i in range(len(sp.test)):
            row = {"model": "encoder", "task": sp.name}
            if cls is not None:
                row |= {"label": cls["predictions"][i], "gold": cls["golds"][i]}
            if tag is not None:
                row |= {"tags": tag["predictions"][i], "gold_tags": tag["golds"][i]}
            predictions.append(row)
        results[sp.name] = metrics | compute
    return {
        "results": results,
        "predictions": predictions,
        "summary": {"eval": results, "budget": budget, "steps_per_model": steps},
    }
