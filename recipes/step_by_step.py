"""Distilling step-by-step (Hsieh et al. 2023): train a small student on labels + teacher rationales.

Modes: ``standard`` (label task only, bare input as in the paper's code: fine-tuning with ``label_source=gt``,
distillation with ``llm``) and ``task_prefix`` (``predict:`` label task + ``explain:`` rationale task, loss =
alpha * label + (1 - alpha) * rationale). Seq2seq students (T5) train with ``Seq2SeqTrainer``, causal ones
(SmolLM2) with TRL's ``SFTTrainer``, both with the two-task loss of :mod:`toolkit.methods.step_by_step.training`. Test rows
come from the official test split (``test_source``/``test_split``, or ``--test_path``); model selection uses a
validation split (``--dev_path`` / ``eval_source`` / ``eval_split``), carved from train only when none is given.
Training or selecting on test-split rationales (or rows sharing a test input) is refused unless
``--allow_test_contamination true``.

Launch:
    accelerate launch recipes/step_by_step.py --config recipes/configs/step_by_step/svamp.yaml
    # CPU, single process:
    OMP_NUM_THREADS=1 python recipes/step_by_step.py --config recipes/configs/step_by_step/svamp.yaml \
        --mode standard --label_source llm
"""

import logging
import os
import time
from dataclasses import dataclass, field

from transformers import TrainingArguments

from toolkit.configs import apply_cpu_safe_defaults, setup_logging
from toolkit.configs import make_parser as _make_parser
from toolkit.methods.step_by_step import training as sbs
from toolkit.methods.step_by_step.data import DataArguments, prepare_data
from toolkit.methods.step_by_step.scoring import score_predictions
from toolkit.models.students import load_student
from toolkit.publishing import reporting
from toolkit.publishing.export import publish_student
from toolkit.run import Card, Push, finish_run
from toolkit.runtime import configure_threads
from toolkit.training.tracking import log_final_metrics, require_tensorboard, resume_checkpoint

logger = logging.getLogger(__name__)

CITATION = """@inproceedings{hsieh-etal-2023-distilling,
  title = {Distilling Step-by-Step! Outperforming Larger Language Models with Less Training Data and Smaller
           Model Sizes},
  author = {Hsieh, Cheng-Yu and Li, Chun-Liang and Yeh, Chih-Kuan and Nakhost, Hootan and Fujii, Yasuhisa and
            Ratner, Alexander and Krishna, Ranjay and Lee, Chen-Yu and Pfister, Tomas},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2023},
  year = {2023}
}"""


@dataclass
class StepByStepArguments(DataArguments):
    """Student and method settings, after the data settings of ``DataArguments`` (training: ``TrainingArguments``)."""

    model_name_or_path: str = field(default="local:smollm2-135m", metadata={"help": "Student: T5 or causal LM."})
    base_model_id: str | None = field(default=None, metadata={"help": "Hub id the card names as the base."})
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of model_name_or_path."})
    push_merged: bool = field(default=False, metadata={"help": "Merge an adapter before pushing (full weights)."})
    mode: str = field(default="task_prefix", metadata={"help": "standard | task_prefix."})
    label_source: str = field(default="gt", metadata={"help": "gt (gold labels) | llm (teacher labels)."})
    alpha: float = field(default=0.5, metadata={"help": "Label-task weight a in a*label + (1-a)*rationale."})
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
        for name, value, choices in (
            ("mode", self.mode, sbs.MODES),
            ("label_source", self.label_source, sbs.LABEL_SOURCES),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        super().__post_init__()


def make_parser():
    return _make_parser([StepByStepArguments, TrainingArguments])


def main(script_args: StepByStepArguments, training_args: TrainingArguments) -> dict:
    setup_logging()
    configure_threads()
    apply_cpu_safe_defaults(training_args)
    require_tensorboard(training_args.report_to)
    resume = resume_checkpoint(training_args)  # a path, or `true` = the latest checkpoint in output_dir
    training_args.remove_unused_columns = False  # features are raw text; the collator tokenises them
    if training_args.include_num_input_tokens_seen in (False, "no"):
        training_args.include_num_input_tokens_seen = "non_padding"  # tokens/s from the trainer's own counter
    push, training_args.push_to_hub = training_args.push_to_hub, False  # pushed by finish_run
    a, out = script_args, training_args.output_dir

    # ---- Data ----
    data = prepare_data(a, mode=a.mode, label_source=a.label_source)
    dev_rows, test_rows, lineage = data["dev_rows"], data["test_rows"], data["lineage"]
    label_prefix = sbs.label_prefix_for(a.mode, a.label_prefix)

    # ---- Model ----
    model, tokenizer, seq2seq = load_student(a.model_name_or_path, revision=a.model_revision)
    generation = dict(is_seq2seq=seq2seq, prefix=label_prefix, max_input_length=a.max_input_length,
                      max_new_tokens=a.max_new_tokens, batch_size=a.generation_batch_size, chat_template=a.chat_template)  # fmt: skip

    def predict(rows):
        return sbs.generate_predictions(model, tokenizer, [r["input"] for r in rows], **generation)

    def score_dev(_model) -> dict:
        return {"accuracy": score_predictions(a.task, predict(dev_rows), dev_rows)[0]}

    # ---- Trainer ----
    collator = sbs.StepByStepCollator(
        tokenizer, is_seq2seq=seq2seq, mode=a.mode, max_input_length=a.max_input_length,
        max_label_length=a.max_label_length, max_rationale_length=a.max_rationale_length,
        label_prefix=label_prefix, rationale_prefix=a.rationale_prefix, chat_template=a.chat_template,
    )  # fmt: skip
    if training_args.eval_strategy == "no":
        logger.warning("eval_strategy=no: no model selection on validation, the last checkpoint is used")
    trainer = sbs.make_trainer(
        model, tokenizer, training_args, is_seq2seq=seq2seq, collator=collator, train_examples=data["examples"],
        eval_examples=[{"input": r["input"], "label": r["gold"]} for r in dev_rows], alpha=a.alpha,
        eval_scorer=score_dev,
    )  # fmt: skip

    # ---- Train ----
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume)
    train_wall = time.perf_counter() - start
    tokens = int(trainer.state.num_input_tokens_seen or 0)  # non-padding tokens of both tasks, this process

    # ---- Evaluate ----
    model = trainer.model
    if training_args.load_best_model_at_end and training_args.metric_for_best_model in ("accuracy", "eval_accuracy"):
        dev_acc = trainer.state.best_metric  # the loaded model's validation accuracy (greedy: deterministic)
    else:
        dev_acc, _ = score_predictions(a.task, predict(dev_rows), dev_rows)
    start = time.perf_counter()
    test_preds = predict(test_rows)
    test_wall = time.perf_counter() - start
    test_acc, correct = score_predictions(a.task, test_preds, test_rows)
    teacher_test = data["report"]["teacher_test"]
    metrics = {
        "task": a.task, "mode": a.mode, "label_source": a.label_source,
        "alpha": a.alpha if a.mode == "task_prefix" else 1.0, "train_fraction": a.train_fraction,
        "student": a.model_name_or_path, "test_accuracy": test_acc, "dev_accuracy": dev_acc,
        "label_prefix": label_prefix, "seed": training_args.seed, **data["report"],
        "best_checkpoint": trainer.state.best_model_checkpoint, "global_steps": trainer.state.global_step,
        "train_loss": train_result.training_loss, "train_wall_s": train_wall, "train_tokens": tokens,
        "train_tokens_per_s": tokens / max(train_wall, 1e-9), "test_generation_s": test_wall, "lineage": lineage,
    }  # fmt: skip
    rows = [
        {"system": f"student ({a.mode}, {a.label_source} labels)", "dev_acc": dev_acc, "test_acc": test_acc},
        {"system": "teacher (few-shot CoT; parse failures wrong)", "dev_acc": None,
         "test_acc": teacher_test["teacher_accuracy_all"] if teacher_test["n_parsed"] else None},
    ]  # fmt: skip

    # ---- Finish ----
    trainer.save_model(out)
    main_process = trainer.is_world_process_zero()
    if main_process:
        sbs.plot_task_losses(trainer.state.log_history, os.path.join(out, "task_losses.png"))
        print(reporting.markdown_table(rows, floatfmt=".4f"))
    repo_id = training_args.hub_model_id or os.path.basename(os.path.normpath(out))
    card = Card(
        base_model=a.model_name_or_path,
        task="qa" if a.task == "cqa" else "math" if a.task == "svamp" else "nli",
        recipe="step_by_step",
        description=sbs.DESCRIPTION,
        model_name=f"step-by-step-{a.task}-{a.mode}-{a.label_source}",
        datasets=[a.train_source],
        lineage=sbs.card_lineage(lineage, data["report"], a.train_source, a.model_name_or_path),
    )
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
            model_name_or_path=a.model_name_or_path,
            base_model_id=a.base_model_id,
            revision=a.model_revision,
            merge=a.push_merged,
            citation=CITATION,
            data_rows={"train": len(data["examples"]), "dev": len(dev_rows), "test": len(test_rows)},
        )
    log_final_metrics(card_metrics, trainer=trainer)
    done = finish_run(
        out,
        metrics=metrics,
        results_md=reporting.markdown_table(rows, floatfmt=".4f"),
        predictions=[
            {"id": r["id"], "input": r["input"], "gold": r["gold"], "prediction": p, "correct": c}
            for r, p, c in zip(test_rows, test_preds, correct)
        ],
        log_history=trainer.state.log_history,
        config={"script_args": a, "training_args": training_args},
        card=card,
        card_metrics=card_metrics,
        push=Push(
            repo_id if push else None, training_args.hub_token, bool(training_args.hub_private_repo), push_folder
        ),
        is_main=main_process,
    )
    if push:
        metrics["hub_url"] = done["hub_url"]
    return metrics


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
