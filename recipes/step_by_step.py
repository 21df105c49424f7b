"""Distilling step-by-step (Hsieh et al. 2023): train a small student on labels + teacher rationales.

Modes: ``standard`` (label task only, bare input as in the paper's code: fine-tuning with ``label_source=gt``,
distillation with ``llm``) and ``task_prefix`` (``predict:`` label task + ``explain:`` rationale task, loss =
alpha * label + (1 - alpha) * rationale). Seq2seq students (T5) train with ``Seq2SeqTrainer``, causal ones
(SmolLM2) with TRL's ``SFTTrainer``, both with the two-task loss of :mod:`toolkit.methods.step_by_step.trainer`.
Test rows come from the official test split (``test_source``/``test_split``, or ``--test_path``); model selection
uses a validation split (``--dev_path`` / ``eval_source`` / ``eval_split``), carved from train only when none is
given. Training or selecting on test-split rationales (or rows sharing a test input) is refused unless
``--allow_test_contamination true``. Validation and test generation are sharded across processes.

Launch:
    accelerate launch recipes/step_by_step.py --config recipes/configs/step_by_step/svamp.yaml
    # CPU, single process:
    OMP_NUM_THREADS=1 python -m recipes.step_by_step --config recipes/configs/step_by_step/svamp.yaml \
        --mode standard --label_source llm
    # two CPU processes (gloo); `--cpu --num_processes 2` or a use_cpu config silently starts ONE process:
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no recipes/step_by_step.py --config ...
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

from transformers import TrainingArguments

from toolkit import configs
from toolkit.methods.step_by_step.card import CARD_TASKS, CITATION, DESCRIPTION, card_lineage
from toolkit.methods.step_by_step.collator import StepByStepCollator
from toolkit.methods.step_by_step.config import StepByStepConfig
from toolkit.methods.step_by_step.data import prepare_data
from toolkit.methods.step_by_step.prediction import predict_labels
from toolkit.methods.step_by_step.scoring import score_predictions
from toolkit.methods.step_by_step.trainer import make_trainer, plot_task_losses
from toolkit.models.students import load_student
from toolkit.publishing import reporting
from toolkit.publishing.export import publish_student
from toolkit.run import Card, Push, finish_run
from toolkit.runtime import configure_threads
from toolkit.training.tracking import dev_curve, log_final_metrics, require_tensorboard, resume_checkpoint

logger = logging.getLogger(__name__)

# Every dev evaluation: the label-task loss (teacher-forced) and the greedy label accuracy on the dev rows.
DEV_CURVE_METRICS = ("eval_loss", "eval_accuracy")


@dataclass
class StepByStepArguments(StepByStepConfig):
    """The student, then the method and data settings of :class:`StepByStepConfig` (training: ``TrainingArguments``)."""

    model_name_or_path: str = field(default="local:smollm2-135m", metadata={"help": "Student: T5 or causal LM."})
    base_model_id: str | None = field(default=None, metadata={"help": "Hub id the card names as the base."})
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of model_name_or_path."})
    push_merged: bool = field(default=False, metadata={"help": "Merge an adapter before pushing (full weights)."})


def make_parser():
    return configs.make_parser([StepByStepArguments, TrainingArguments])


def method_config(script_args: StepByStepArguments) -> StepByStepConfig:
    """The library's config: every method and data field of the arguments (the student is the recipe's own)."""
    return StepByStepConfig(**{f.name: getattr(script_args, f.name) for f in dataclasses.fields(StepByStepConfig)})


def prepare_training_args(training_args: TrainingArguments) -> bool:
    """Settings every run needs; returns whether to push (``finish_run`` pushes, not the trainer)."""
    configs.apply_cpu_safe_defaults(training_args)
    require_tensorboard(training_args.report_to)
    training_args.remove_unused_columns = False  # features are raw text; the collator tokenises them
    if training_args.include_num_input_tokens_seen in (False, "no"):
        training_args.include_num_input_tokens_seen = "non_padding"  # tokens/s from the trainer's own counter
    push = bool(training_args.push_to_hub)
    training_args.push_to_hub = False
    if training_args.eval_strategy == "no":
        logger.warning("eval_strategy=no: no model selection on validation, the last checkpoint is used")
    return push


def distributed_record(trainer) -> dict:
    """Which multi-process setup actually ran: Accelerate's distributed type, process count, the model's wrapper."""
    accelerator = trainer.accelerator
    return {
        "distributed_type": accelerator.distributed_type.value,
        "num_processes": accelerator.num_processes,
        "wrapper": type(trainer.model_wrapped).__name__,
    }


def main(script_args: StepByStepArguments, training_args: TrainingArguments) -> dict:
    configs.setup_logging()
    configure_threads()
    push = prepare_training_args(training_args)
    resume = resume_checkpoint(training_args)  # a path, or `true` = the latest checkpoint in output_dir
    config = method_config(script_args)
    student = script_args.model_name_or_path
    out = training_args.output_dir

    # ---- Data ----
    data = prepare_data(config)
    dev_rows = data["dev_rows"]
    test_rows = data["test_rows"]

    # ---- Model ----
    model, tokenizer, seq2seq = load_student(student, revision=script_args.model_revision)

    def score_dev(model_to_score) -> dict:
        predictions = predict_labels(model_to_score, tokenizer, dev_rows, config, is_seq2seq=seq2seq)
        accuracy, _ = score_predictions(config.task, predictions, dev_rows)
        return {"accuracy": accuracy}

    # ---- Trainer ----
    trainer = make_trainer(
        model,
        tokenizer,
        training_args,
        is_seq2seq=seq2seq,
        collator=StepByStepCollator.from_config(tokenizer, config, is_seq2seq=seq2seq),
        train_examples=data["examples"],
        eval_examples=[{"input": row["input"], "label": row["gold"]} for row in dev_rows],
        alpha=config.alpha,
        eval_scorer=score_dev,
    )

    # ---- Train ----
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume)
    train_wall = time.perf_counter() - start
    tokens = int(trainer.state.num_input_tokens_seen or 0)  # non-padding tokens of both tasks, all processes

    # ---- Evaluate ----
    model = trainer.model
    if training_args.load_best_model_at_end and training_args.metric_for_best_model in ("accuracy", "eval_accuracy"):
        dev_acc = trainer.state.best_metric  # the loaded model's validation accuracy (greedy: deterministic)
    else:
        dev_acc = score_dev(model)["accuracy"]
    start = time.perf_counter()
    test_preds = predict_labels(model, tokenizer, test_rows, config, is_seq2seq=seq2seq)
    test_wall = time.perf_counter() - start
    test_acc, correct = score_predictions(config.task, test_preds, test_rows)
    teacher_test = data["report"]["teacher_test"]
    metrics = {
        "task": config.task,
        "mode": config.mode,
        "label_source": config.label_source,
        "alpha": config.effective_alpha,
        "train_fraction": config.train_fraction,
        "student": student,
        "test_accuracy": test_acc,
        "dev_accuracy": dev_acc,
        "dev_curve": dev_curve(trainer.state.log_history, DEV_CURVE_METRICS),  # a plan chooses its steps on it
        "label_prefix": config.label_task_prefix,
        "seed": training_args.seed,
        **data["report"],
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "global_steps": trainer.state.global_step,
        "train_loss": train_result.training_loss,
        "train_tokens": tokens,
        "train_tokens_per_s": tokens / max(train_wall, 1e-9),
        "lineage": data["lineage"],
        "distributed": distributed_record(trainer),
    }
    teacher_acc = teacher_test["teacher_accuracy_all"] if teacher_test["n_parsed"] else None
    rows = [
        {"system": f"student ({config.mode}, {config.label_source} labels)", "dev_acc": dev_acc, "test_acc": test_acc},
        {"system": "teacher (few-shot CoT; parse failures wrong)", "dev_acc": None, "test_acc": teacher_acc},
    ]

    # ---- Finish ----
    trainer.save_model(out)  # every rank takes part (a sharded model is gathered); the main process writes
    main_process = trainer.is_world_process_zero()
    results_md = reporting.markdown_table(rows, floatfmt=".4f")
    if main_process:
        plot_task_losses(trainer.state.log_history, os.path.join(out, "task_losses.png"))
        print(results_md)
    card = Card(
        base_model=student,
        task=CARD_TASKS[config.task],
        recipe="step_by_step",
        description=DESCRIPTION,
        model_name=f"step-by-step-{config.task}-{config.mode}-{config.label_source}",
        datasets=[config.train_source],
        lineage=card_lineage(data["lineage"], data["report"], config.train_source, student),
    )
    repo_id = training_args.hub_model_id or os.path.basename(os.path.normpath(out))
    card_metrics = {
        "validation": {"accuracy": dev_acc},
        "test": {"accuracy": test_acc},
        "teacher (test)": {"accuracy": teacher_test["teacher_accuracy_all"]},
    }
    push_folder = out
    if main_process:
        card, push_folder = publish_student(
            out,
            card,
            repo_id,
            model_name_or_path=student,
            base_model_id=script_args.base_model_id,
            revision=script_args.model_revision,
            merge=script_args.push_merged,
            citation=CITATION,
            data_rows={"train": len(data["examples"]), "dev": len(dev_rows), "test": len(test_rows)},
        )
    log_final_metrics(card_metrics, trainer=trainer)
    done = finish_run(
        out,
        metrics=metrics,
        tables={"results": rows},
        timings={"train_s": train_wall, "test_generation_s": test_wall},
        tokens=tokens,
        results_md=results_md,
        predictions=[
            {"id": row["id"], "input": row["input"], "gold": row["gold"], "prediction": pred, "correct": right}
            for row, pred, right in zip(test_rows, test_preds, correct)
        ],
        prediction_columns={"input": "input", "prediction": "prediction", "reference": "gold", "facts": ["correct"]},
        log_history=trainer.state.log_history,
        config={"script_args": script_args, "training_args": training_args},
        card=card,
        card_metrics=card_metrics,
        push=Push(
            repo_id if push else None, training_args.hub_token, bool(training_args.hub_private_repo), push_folder
        ),
        is_main=main_process,
    )
    if done["record"] is None:  # not the main process: it wrote nothing
        return metrics
    return {**done["record"], "hub_url": done["hub_url"]}


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
