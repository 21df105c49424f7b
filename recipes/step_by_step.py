"""Distilling step-by-step (Hsieh et al. 2023): train a small student on labels + teacher rationales.

Modes: ``standard`` (label task only, bare input as in the paper's code: fine-tuning with ``label_source=gt``,
distillation with ``llm``) and ``task_prefix`` (``predict:`` label task + ``explain:`` rationale task, loss =
alpha * label + (1 - alpha) * rationale). Seq2seq (T5) and causal (SmolLM2) students. Test rows come from the
official test split (``test_source``/``test_split``, or a file via ``--test_path``); model selection uses a
validation split (``--dev_path`` / ``eval_source`` / ``eval_split``), carved from train only when none is given.
Training or selecting on test-split rationales (or on rows sharing a test input) is refused unless
``--allow_test_contamination true``.

Launch:
    accelerate launch recipes/step_by_step.py --config recipes/configs/step_by_step/svamp.yaml
    # CPU, single process:
    OMP_NUM_THREADS=1 python recipes/step_by_step.py --config recipes/configs/step_by_step/svamp.yaml \
        --mode standard --label_source llm
"""

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

from transformers import TrainingArguments

from toolkit.configs import apply_cpu_safe_defaults, save_config, setup_logging
from toolkit.configs import make_parser as _make_parser
from toolkit.report_artifacts import report_from_run_dir
from toolkit.runtime import configure_threads
from toolkit.tracking import require_tensorboard, resume_checkpoint

logger = logging.getLogger(__name__)
TASK_LOSSES = ("label_loss", "rationale_loss")  # logged by StepByStepTrainer next to the combined loss


@dataclass
class StepByStepArguments:
    """Data, task and student settings (training hyper-parameters live in ``TrainingArguments``)."""

    task: str = field(default="svamp", metadata={"help": "cqa | svamp | anli1 | esnli (formatting and scoring)."})
    model_name_or_path: str = field(default="local:smollm2-135m", metadata={"help": "Student: T5 or causal LM."})
    mode: str = field(default="task_prefix", metadata={"help": "standard | task_prefix."})
    label_source: str = field(default="gt", metadata={"help": "gt (gold labels) | llm (teacher labels)."})
    alpha: float = field(default=0.5, metadata={"help": "Label-task weight a in a*label + (1-a)*rationale."})
    train_source: str | None = field(
        default=None, metadata={"help": "'palm:<task>' or a saved rationale dataset path; default palm:<task>."}
    )
    train_split: str = field(default="train", metadata={"help": "Split of train_source to train on."})
    eval_source: str | None = field(
        default=None, metadata={"help": "Validation source; with eval_split unset its 'dev' split is used."}
    )
    eval_split: str | None = field(
        default=None,
        metadata={"help": "Validation split of eval_source (default train_source); unset with no eval_source/dev_path"
                  " = carve dev_size rows from train (seeded)."},
    )  # fmt: skip
    dev_path: str | None = field(
        default=None, metadata={"help": "Official validation file/dataset; overrides eval_source, no carve."}
    )
    dev_size: float = field(default=0.1, metadata={"help": "Carved validation size: fraction (<1) or row count."})
    test_source: str | None = field(default=None, metadata={"help": "Test source (default: palm:<task>)."})
    test_split: str = field(default="test", metadata={"help": "Test split (never used for selection)."})
    test_path: str | None = field(
        default=None, metadata={"help": "Official test file/dataset (gold labels); overrides test_source."}
    )
    allow_test_contamination: bool = field(
        default=False,
        metadata={"help": "Run even if train/validation rows come from the test split or share test inputs "
                  "(refused by default; recorded in metrics.json)."},
    )  # fmt: skip
    data_dir: str | None = field(default=None, metadata={"help": "Data root (default: TOOLKIT_DATA_DIR)."})
    input_column: str | None = field(default=None, metadata={"help": "Input text column of a saved dataset."})
    label_column: str | None = field(default=None, metadata={"help": "Gold label column of a saved dataset."})
    svamp_equations: bool = field(
        default=True, metadata={"help": "SVAMP targets are equations (paper) scored by value, not bare numbers."}
    )
    train_fraction: float = field(default=1.0, metadata={"help": "Fraction of train used (data-size curve)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap on train rows (after fraction)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on validation rows."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Cap on test rows."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the dev carve and subsampling."})
    exclude_parse_failures: bool = field(
        default=False,
        metadata={"help": "Also drop teacher parse failures where they are valid rows (standard, gold labels), so "
                  "every mode trains on the same examples. They are always dropped where they have no target."},
    )  # fmt: skip
    label_prefix: str | None = field(
        default=None,
        metadata={"help": "Label-task input prefix; default 'predict: ' for task_prefix, none for standard."},
    )
    rationale_prefix: str = field(default="explain: ", metadata={"help": "Rationale-task input prefix."})
    chat_template: bool = field(default=False, metadata={"help": "Causal: wrap prompts in the chat template."})
    max_input_length: int = field(default=256, metadata={"help": "Max input tokens."})
    max_label_length: int = field(default=32, metadata={"help": "Max label tokens (eos included)."})
    max_rationale_length: int = field(default=128, metadata={"help": "Max rationale tokens (eos included)."})
    max_new_tokens: int = field(default=32, metadata={"help": "Generation budget for labels."})
    generation_batch_size: int = field(default=16, metadata={"help": "Batch size for evaluation generation."})

    def __post_init__(self):
        from toolkit.step_by_step import LABEL_SOURCES, MODES, TASKS

        for name, value, choices in (("task", self.task, TASKS), ("mode", self.mode, MODES)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {self.label_source!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.dev_size <= 0:
            raise ValueError("dev_size must be positive")
        self.train_source = self.train_source or f"palm:{self.task}"
        # The official-file flags win over a config's *_source (a YAML names the PaLM source by default).
        self.eval_source = self.dev_path or self.eval_source
        self.test_source = self.test_path or self.test_source or f"palm:{self.task}"


def make_parser():
    return _make_parser([StepByStepArguments, TrainingArguments])


def main(script_args: StepByStepArguments, training_args: TrainingArguments) -> dict:
    from toolkit import reporting
    from toolkit import step_by_step as sbs
    from toolkit.students import load_student

    setup_logging()
    configure_threads()
    apply_cpu_safe_defaults(training_args)
    require_tensorboard(training_args.report_to)
    resume = resume_checkpoint(training_args)  # a path, or `true` = the latest checkpoint in output_dir
    training_args.remove_unused_columns = False  # features are raw text; the collator tokenises them
    push, training_args.push_to_hub = training_args.push_to_hub, False  # pushed by toolkit.hub below
    a, out = script_args, training_args.output_dir
    task = a.task

    # ---- Data ----
    d = prepare_data(a)
    dev_rows, test_rows, train_examples = d["dev_rows"], d["test_rows"], d["examples"]
    lineage, teacher_train, teacher_test = d["lineage"], d["teacher_train"], d["teacher_test"]
    eval_features = [{"input": r["input"], "label": r["gold"]} for r in dev_rows]
    label_prefix = sbs.label_prefix_for(a.mode, a.label_prefix)

    # ---- Model ----
    model, tokenizer, seq2seq = load_student(a.model_name_or_path)
    generation = dict(
        is_seq2seq=seq2seq,
        prefix=label_prefix,
        max_input_length=a.max_input_length,
        max_new_tokens=a.max_new_tokens,
        batch_size=a.generation_batch_size,
        chat_template=a.chat_template,
    )

    def predict(rows):
        return sbs.generate_predictions(model, tokenizer, [r["input"] for r in rows], **generation)

    def score_dev(_model) -> dict:
        return {"accuracy": sbs.score_predictions(task, predict(dev_rows), dev_rows)[0]}

    # ---- Trainer ----
    collator = sbs.StepByStepCollator(
        tokenizer,
        is_seq2seq=seq2seq,
        mode=a.mode,
        max_input_length=a.max_input_length,
        max_label_length=a.max_label_length,
        max_rationale_length=a.max_rationale_length,
        label_prefix=label_prefix,
        rationale_prefix=a.rationale_prefix,
        chat_template=a.chat_template,
    )
    if training_args.eval_strategy == "no":
        logger.warning("eval_strategy=no: no model selection on validation, the last checkpoint is used")
    trainer = sbs.StepByStepTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_examples,
        eval_dataset=eval_features,
        processing_class=tokenizer,
        alpha=a.alpha,
        eval_scorer=score_dev,
    )

    # ---- Train ----
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume)
    train_wall = time.perf_counter() - start
    best_checkpoint = trainer.state.best_model_checkpoint

    # ---- Evaluate ----
    model = trainer.model
    if training_args.load_best_model_at_end and training_args.metric_for_best_model in ("accuracy", "eval_accuracy"):
        dev_acc = trainer.state.best_metric  # the loaded model's validation accuracy (greedy: deterministic)
    else:
        dev_acc, _ = sbs.score_predictions(task, predict(dev_rows), dev_rows)
    start = time.perf_counter()
    test_preds = predict(test_rows)
    test_wall = time.perf_counter() - start
    test_acc, correct = sbs.score_predictions(task, test_preds, test_rows)
    metrics = {
        "task": task,
        "mode": a.mode,
        "label_source": a.label_source,
        "alpha": a.alpha if a.mode == "task_prefix" else 1.0,
        "train_fraction": a.train_fraction,
        "student": a.model_name_or_path,
        "test_accuracy": test_acc,
        "dev_accuracy": dev_acc,
        "label_prefix": label_prefix,
        "seed": training_args.seed,
        "n_train": len(train_examples),
        "n_dev": len(dev_rows),
        "n_test": len(test_rows),
        "data_splits": d["splits"],
        "train_test_overlap": d["contamination"]["n_test_inputs_seen"],
        "test_contamination": d["contamination"],
        "train_exclusions": d["exclusions"],
        "parse_failures_by_mode": d["parse_failures_by_mode"],
        "teacher_train": teacher_train,
        "teacher_test": teacher_test,
        "best_checkpoint": best_checkpoint,
        "global_steps": trainer.state.global_step,
        "train_loss": train_result.training_loss,
        "train_wall_s": train_wall,
        "train_step_s": trainer.train_step_seconds,
        "train_tokens": trainer.train_tokens,
        "train_tokens_per_s": trainer.train_tokens / max(trainer.train_step_seconds, 1e-9),
        "test_generation_s": test_wall,
        "lineage": lineage,
    }
    rows = [
        {"system": f"student ({a.mode}, {a.label_source} labels)", "dev_acc": dev_acc, "test_acc": test_acc},
        {
            "system": "teacher (few-shot CoT; parse failures wrong)",
            "dev_acc": None,
            "test_acc": teacher_test["teacher_accuracy_all"] if teacher_test["n_parsed"] else None,
        },
    ]

    # ---- Save / push ----
    if trainer.is_world_process_zero():
        os.makedirs(out, exist_ok=True)
        trainer.save_model(out)
        reporting.write_metrics(out, metrics)
        reporting.write_table(out, rows, floatfmt=".4f")
        reporting.write_jsonl(
            os.path.join(out, "predictions.jsonl"),
            (
                {"id": r["id"], "input": r["input"], "gold": r["gold"], "prediction": p, "correct": c}
                for r, p, c in zip(test_rows, test_preds, correct)
            ),
        )
        reporting.plot_training_curves(trainer.state.log_history, os.path.join(out, "training_curves.png"))
        task_points = [
            {"step": e["step"], "loss": e[k], "task": k}
            for e in trainer.state.log_history
            for k in TASK_LOSSES
            if k in e
        ]
        reporting.plot_xy(
            task_points, "step", "loss", "task", os.path.join(out, "task_losses.png"), title="per-task loss"
        )
        save_config(os.path.join(out, "run_config.json"), script_args=a, training_args=training_args)
        _write_card(out, a, training_args, metrics, lineage)
        report_from_run_dir(out)  # report.html: tables, curves, sample rows, lineage, command
        if push:
            from toolkit.hub import push_to_hub

            repo_id = training_args.hub_model_id or os.path.basename(os.path.normpath(out))
            metrics["hub_url"] = push_to_hub(
                out, repo_id, token=training_args.hub_token, private=bool(training_args.hub_private_repo)
            )
        print(reporting.markdown_table(rows, floatfmt=".4f"))
    return metrics


def prepare_data(a: StepByStepArguments) -> dict:
    """Train / validation / test rows of a run, its training examples, teacher stats and the contamination check.

    Validation comes from ``eval_source``/``eval_split`` (``--dev_path``) when any is given, else it is carved from
    the train pool (seeded). Raises :class:`toolkit.step_by_step_data.ContaminationError` before any training when
    train or validation rows come from the test split (unless ``allow_test_contamination``).
    """
    from toolkit import step_by_step_data as data

    load = dict(
        task=a.task,
        data_dir=a.data_dir,
        input_column=a.input_column,
        label_column=a.label_column,
        svamp_equations=a.svamp_equations,
    )
    pool, lineage = data.load_rows(a.train_source, a.train_split, **load)
    carved = not (a.eval_source or a.eval_split)
    dev_part = None if carved else (a.eval_source or a.train_source, a.eval_split or "dev")
    if carved:
        pool, dev_rows = data.carve_dev(pool, a.dev_size, a.split_seed)
    else:
        dev_rows, _ = data.load_rows(*dev_part, **load)
    train_rows = data.subsample(pool, a.train_fraction, a.max_train_samples, a.split_seed)
    examples, exclusions = data.build_train_examples(
        train_rows, mode=a.mode, label_source=a.label_source, exclude_parse_failures=a.exclude_parse_failures
    )
    dev_rows = data.subsample(dev_rows, 1.0, a.max_eval_samples, a.split_seed)
    test_rows, _ = data.load_rows(a.test_source, a.test_split, **load)
    n_test_split = len(test_rows)
    test_rows = data.subsample(test_rows, 1.0, a.max_test_samples, a.split_seed)
    contamination = data.check_contamination(
        train=(a.train_source, a.train_split),
        dev=dev_part,
        test=(a.test_source, a.test_split),
        seen_inputs=[r["input"] for r in train_rows + dev_rows],
        test_inputs=[r["input"] for r in test_rows],
        allow=a.allow_test_contamination,
    )
    train_name = f"{a.train_source} [{a.train_split}]"
    if carved:
        dev_name = f"carved from {train_name} (dev_size={a.dev_size:g}, seed {a.split_seed})"
    else:
        dev_name = "of {} [{}]".format(*dev_part)
    splits = {
        "train": f"{len(train_rows)} of {len(pool)} rows of {train_name}" + (" after the dev carve" if carved else ""),
        "dev": f"{len(dev_rows)} rows {dev_name}",
        "test": f"{len(test_rows)} of {n_test_split} rows of {a.test_source} [{a.test_split}]",
    }
    return {
        "train_rows": train_rows,
        "dev_rows": dev_rows,
        "test_rows": test_rows,
        "examples": examples,
        "exclusions": exclusions,
        "parse_failures_by_mode": data.parse_failure_accounting(
            train_rows, exclude_parse_failures=a.exclude_parse_failures
        ),
        "lineage": lineage,
        "teacher_train": data.teacher_stats(a.task, pool),
        "teacher_test": data.teacher_stats(a.task, test_rows),
        "contamination": contamination,
        "splits": splits,
    }


def _write_card(out: str, a: StepByStepArguments, training_args, metrics: dict, lineage: dict) -> None:
    """Model card with the rationale lineage (teacher, template hash, parse rate) and this run's metrics."""
    from toolkit.hub import Lineage, render_model_card

    teacher = metrics["teacher_train"]
    lin = Lineage(
        teacher_id=", ".join(lineage["teacher_id"]) or None,
        template_hash=", ".join(lineage["template_hash"]) or None,
        generated_dataset=a.train_source,
        base_model=a.model_name_or_path,
        extra={
            "sampling": ", ".join(lineage["sampling"]) or None,
            "teacher_parse_rate (train pool)": teacher["parse_rate"],
            "teacher_accuracy_vs_gold (parsed train rows)": teacher["teacher_accuracy_parsed"],
            "excluded_from_training": metrics["train_exclusions"],
        },
    )
    card = render_model_card(
        model_name=f"step-by-step-{a.task}-{a.mode}-{a.label_source}",
        base_model=a.model_name_or_path,
        task="qa" if a.task == "cqa" else "math" if a.task == "svamp" else "nli",
        recipe="step_by_step",
        metrics={
            "validation": {"accuracy": metrics["dev_accuracy"]},
            "test": {"accuracy": metrics["test_accuracy"]},
            "teacher (test)": {"accuracy": metrics["teacher_test"]["teacher_accuracy_all"]},
        },
        lineage=lin,
        # to_dict() turns the str-valued enums (eval_strategy...) into plain strings the YAML dumper accepts.
        training_config={"script_args": dataclasses.asdict(a), "training_args": training_args.to_dict()},
        datasets=[a.train_source],
    )
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
