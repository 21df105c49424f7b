"""Baselines of the multi-task recipe, on the same rows as the multi-task model, each row with its compute.

- **Single-task (Q)LoRA models** (:func:`run_single_task_baselines`): one model per mixture entry, trained and
  scored exactly like the multi-task model; the joint intent+slots entry becomes the paper's two-model setup, an
  intent model and a slot model, scored together with a joint exact match.
- **Encoder models** (:func:`run_encoder_baselines`): the paper's RoBERTa stand-in (``local:minilm-l6`` offline),
  a sequence classifier per label task and a token classifier for slots; its label predictions go through the same
  :func:`toolkit.evaluation.label_scoring.label_scores` (strict = snapped for an argmax, macro-F1 over the train
  label set).

:func:`run_baselines` runs what a :class:`~toolkit.methods.multitask.config.MultitaskConfig` asks for at the step
budget :func:`toolkit.training.budget.baseline_steps` gives each model and returns their metrics, prediction rows and
table rows (:class:`BaselineResults`).

Under several processes every rank calls it: each baseline is one ``Trainer`` run, data-parallel over the ranks
with the multi-task model's global batch (trained once, sharded, never once per rank), and its test rows are
generated sharded (:func:`toolkit.methods.multitask.formats.evaluate`). Nothing is written but the ``Trainer``'s own
logs; the recipe's main process writes the artifacts.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from toolkit.baselines.encoder import finetune_sequence_classifier, finetune_token_classifier
from toolkit.evaluation.label_scoring import label_scores
from toolkit.methods.multitask import report
from toolkit.methods.multitask.config import MultitaskConfig
from toolkit.methods.multitask.data import TaskSplits
from toolkit.methods.multitask.formats import evaluate, scored_ids, to_prompt_completion, two_model_exact_match
from toolkit.methods.multitask.mixture import build_mixture, rows_per_step
from toolkit.models.students import load_student, lora_config
from toolkit.training.budget import baseline_steps, model_parts
from toolkit.training.sft import generation_model, sft_trainer, train
from toolkit.training.tracking import report_to_list

__all__ = [
    "BaselineResults",
    "as_task",
    "run_baselines",
    "run_encoder_baselines",
    "run_single_task_baselines",
]


@dataclass
class BaselineResults:
    """What baselines add to a run: ``summary`` entries (metrics.json), prediction rows and table rows."""

    summary: dict[str, Any] = field(default_factory=dict)
    predictions: list[dict] = field(default_factory=list)
    tables: report.Tables = field(default_factory=report.Tables)

    def extend(self, other: BaselineResults) -> None:
        """Append ``other``'s entries, rows and table rows after this one's."""
        self.summary |= other.summary
        self.predictions += other.predictions
        self.tables.extend(other.tables)


def as_task(sp: TaskSplits, task: str) -> TaskSplits:
    """A copy of a joint intent+slots split retargeted to ``task`` (same rows)."""
    part = copy.copy(sp)
    part.task = task
    part.name = f"{sp.name.rsplit(':', 1)[0]}:{task}"
    part.labels = sp.labels if task == "intent" else None
    return part


def _baseline_args(training_args: TrainingArguments, name: str, max_steps: int | None) -> TrainingArguments:
    """The multi-task model's arguments for one baseline model: its own folder, no checkpoints, no dev curve."""
    args = copy.deepcopy(training_args)
    if max_steps is not None:  # equal-total-budget baselines: this model's share of the multi-task steps
        args.max_steps = max_steps
    args.output_dir = os.path.join(training_args.output_dir, "baselines", name.replace(":", "_"))
    args.save_strategy = "no"
    args.resume_from_checkpoint = None
    args.eval_strategy = "no"
    return args


def replayed_rows(part: TaskSplits, drawn: list[int], args, *, use_chat: bool, max_listed_labels: int):
    """The training rows of a single-task model that replays the multi-task model's draw of its task.

    ``drawn`` indexes ``part.train`` (the multi-task model's ``mixture_rows`` entry), so the baseline trains the very
    rows the multi-task model saw of this task, each as often; ``args.max_steps`` becomes the steps they fill.
    """
    if not drawn:
        raise ValueError(f"the multi-task model drew no rows of {part.name}: nothing to replay")
    rows = to_prompt_completion(part, part.train.select(drawn), use_chat, max_listed_labels)
    args.max_steps = math.ceil(len(drawn) / rows_per_step(args))
    info = {"mixture": {part.name: 1.0}, "mixture_counts": {part.name: len(drawn)}, "replayed_multitask_rows": True}
    return rows, info


def _train_single(name, part, *, config, training_args, tokenizer, max_steps, replay=None):
    """One single-task model: trained (metrics only, no checkpoints) and scored like the multi-task model.

    ``replay``: the multi-task model's drawn row indices of this task; given, the model trains exactly those rows.
    """
    args = _baseline_args(training_args, name, max_steps)
    chat = bool(tokenizer.chat_template)
    if replay is not None:
        rows, mix_info = replayed_rows(part, replay, args, use_chat=chat, max_listed_labels=config.max_listed_labels)
    else:
        rows, mix_info = build_mixture(
            [part],
            config.weights,
            args,
            strategy=config.mixture_strategy,
            temperature=config.mixture_temperature,
            use_chat=chat,
            max_listed_labels=config.max_listed_labels,
        )
    model, _, _ = load_student(
        config.model_name_or_path,
        quantization=config.quantization_mode,
        quant_storage=config.bnb_4bit_quant_storage,
        gradient_checkpointing=bool(args.gradient_checkpointing),
        attach_lora=False,
    )
    peft_config = lora_config(
        r=config.lora_r,
        alpha=config.lora_alpha,
        dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
    )
    trainer = sft_trainer(model, tokenizer, args, rows, peft_config=peft_config)
    info = train(trainer) | mix_info
    with generation_model(trainer) as trained:
        results, predictions = evaluate(
            name,
            trained,
            tokenizer,
            [part],
            max_new_tokens=config.max_new_tokens,
            batch_size=config.eval_batch_size,
            constrained=config.constrained,
            max_listed_labels=config.max_listed_labels,
        )
    return info, results, predictions


def run_single_task_baselines(
    *,
    config: MultitaskConfig,
    splits: list[TaskSplits],
    tokenizer,
    training_args: TrainingArguments,
    steps: dict[str, int] | None = None,
    replay: dict[str, list[int]] | None = None,
) -> BaselineResults:
    """Train and score one (Q)LoRA model per mixture entry (two for a joint entry: an intent and a slot model).

    Args:
        config: The run's method config (student, LoRA, mixture, decoding).
        splits: The mixture entries, as the multi-task model saw them.
        tokenizer: The student's tokenizer.
        training_args: The multi-task model's ``SFTConfig``; each model gets a deep copy.
        steps: ``{model name: max_steps}`` (:func:`toolkit.training.budget.baseline_steps`), ``None`` = the
            multi-task model's budget for each.
        replay: ``{entry name: drawn row indices}`` (the multi-task model's ``mixture_rows``): each model trains
            exactly the rows the multi-task model drew of its entry (both models of a joint entry the same rows),
            for the steps they fill; ``steps`` is then ignored.
    """
    kind = "single-task QLoRA" if config.quantization else "single-task LoRA"
    out = BaselineResults()
    all_infos = []
    for sp in splits:
        parts = [sp] if sp.task != "intent_slots" else [as_task(sp, "intent"), as_task(sp, "slots")]
        merged: dict[str, Any] = {}
        infos, by_task = [], {}
        for part in parts:
            name = f"single:{part.name}"
            info, results, rows = _train_single(
                name,
                part,
                config=config,
                training_args=training_args,
                tokenizer=tokenizer,
                max_steps=(steps or {}).get(part.name),
                replay=None if replay is None else replay.get(sp.name, []),
            )
            out.summary[name] = {"train": info, "eval": results}
            out.predictions += rows
            out.tables.validity += report.validity_rows(name, results)
            by_task[part.task] = rows
            merged[sp.name] = merged.get(sp.name, {}) | results[part.name]
            infos.append(info)
        if sp.task == "intent_slots":
            merged[sp.name]["exact_match"] = two_model_exact_match(by_task["intent"], by_task["slots"])
            out.summary[f"single:{sp.name}:two_model_exact_match"] = merged[sp.name]["exact_match"]
        label = kind + (" x2 (intent model + slot model)" if len(parts) == 2 else "")
        out.tables.table.append(report.headline_row(f"{label}: {sp.name}", merged, report.compute_of(*infos)))
        all_infos += infos
    out.tables.add_total("single-task LoRA (all)", len(all_infos), report.compute_of(*all_infos))
    return out


def _encoder_results(
    config: MultitaskConfig, splits: list[TaskSplits], training_args: TrainingArguments, steps: dict[str, int] | None
) -> BaselineResults:
    """The encoder baselines (:func:`run_encoder_baselines`) as summary, prediction and table rows."""
    model = config.encoder_model
    encoder = run_encoder_baselines(model, splits, training_args, config.encoder_learning_rate, steps=steps)
    out = BaselineResults(summary={"encoder": encoder["summary"]}, predictions=encoder["predictions"])
    compute = report.compute_of(*encoder["results"].values())
    out.tables.validity += report.validity_rows("encoder", encoder["results"])
    out.tables.table.append(report.headline_row(f"encoder {model} (seq + token cls)", encoder["results"], compute))
    models = sum(1 + (sp.task == "intent_slots") for sp in splits)
    out.tables.add_total(f"encoder {model}", models, compute)
    return out


def run_baselines(
    *,
    config: MultitaskConfig,
    splits: list[TaskSplits],
    tokenizer,
    training_args: TrainingArguments,
    multitask_info: dict[str, Any],
) -> BaselineResults:
    """Every baseline of ``config.baselines`` at ``config.baseline_budget`` (see the module docstring).

    Args:
        config: The run's method config.
        splits: The mixture entries the multi-task model trained and was scored on.
        tokenizer: The student's tokenizer.
        training_args: The multi-task model's ``SFTConfig`` (copied per model, never changed).
        multitask_info: The multi-task model's training info (``train_steps``, ``mixture``): what the budget splits.

    Returns:
        The baselines' ``summary`` entries (``baseline_budget``, ``single:<task>``, ``encoder``), prediction rows and
        table rows, in that order: single-task models first, then the encoders.
    """
    steps = baseline_steps(config.baseline_budget, multitask_info["train_steps"], splits, multitask_info["mixture"])
    # match_task_rows replays the multi-task model's own draw: the same rows of each task, as often, not a fresh
    # draw of the same size (the single-task models' steps are then what those rows fill).
    replay = multitask_info.get("mixture_rows") if config.baseline_budget == "match_task_rows" else None
    out = BaselineResults(summary={"baseline_budget": {"mode": config.baseline_budget, "steps_per_model": steps}})
    if replay is not None:
        out.summary["baseline_budget"]["replayed_multitask_rows"] = True
    if "single_task" in config.baselines:
        out.extend(
            run_single_task_baselines(
                config=config,
                splits=splits,
                tokenizer=tokenizer,
                training_args=training_args,
                steps=steps,
                replay=replay,
            )
        )
    if "encoder" in config.baselines:
        out.extend(_encoder_results(config, splits, training_args, steps))
    return out


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
    ``steps`` gives its own count (the equal-total-budget variant, see :mod:`toolkit.training.budget`).

    Args:
        model_name_or_path: Encoder checkpoint (``local:minilm-l6``).
        splits: Objects with ``name``, ``task``, ``train``, ``test``, ``labels`` (:class:`toolkit.methods.multitask.data.TaskSplits`).
        training_args: The recipe's ``TrainingArguments`` (budget, seed and ``report_to`` are read from it; logged
            models write to ``<output_dir>/baselines/encoder_<model>/runs/``).
        learning_rate: Encoder learning rate (encoders want a larger one than LoRA-on-LLM defaults suggest).
        steps: ``{model_name: max_steps}`` keyed like :func:`toolkit.training.budget.model_parts` (``20ng:topic``,
            ``snips:intent``, ``snips:slots``); ``None`` = the per-model budget above.

    Returns:
        ``{"results": {task_name: metrics}, "predictions": [rows], "summary": {...}}`` with metric keys named like
        ``toolkit.methods.multitask.formats.score_task`` (``topic_accuracy``, ``topic_accuracy_snapped``, ``macro_f1``,
        ``intent_accuracy``, ``slot_f1``, ``exact_match`` ...; an argmax is always a label, so snapped = strict and
        ``*_invalid`` = 0) plus the compute of the task's models (``train_seconds``, ``train_cpu_seconds``,
        ``train_steps``, ``train_tokens`` — encoder word pieces), so one table can hold both.
    """
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
        for i, row_id in enumerate(scored_ids(sp.test)):
            row = {"model": "encoder", "task": sp.name, "id": row_id}
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
