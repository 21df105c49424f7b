"""LMCor (Vernikos et al. 2023): a small corrector rewrites k LLM candidates of an input into the target.

With no arguments it runs the offline demo (``recipes/configs/lmcor/default.yaml``: the shipped GEC set, candidates
from the local SmolLM2 teacher, a SmolLM2 LoRA corrector) and prints the results table:

    accelerate launch recipes/lmcor.py
    accelerate launch recipes/lmcor.py --config recipes/configs/lmcor/wmt22_ende.yaml
    accelerate launch recipes/lmcor.py --config recipes/configs/lmcor/e2e.yaml --test_path e2e:test
    python -m recipes.lmcor --config recipes/configs/lmcor/jfleg.yaml
    # the paper's ranking baseline: the same student, same rows, trained to output the best candidate
    python -m recipes.lmcor --config recipes/configs/lmcor/wmt22_deen.yaml --mode reranker
    # two CPU processes (gloo); `--cpu --num_processes 2` or a use_cpu config silently starts ONE process:
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no recipes/lmcor.py --config ...

Every rank generates its share of the test rows (and of the learning curve's); the main process scores them and
writes the run directory: the corrector (or LoRA adapter) and toolkit.run.ARTIFACTS (every baseline on the same rows).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from toolkit.configs import apply_cpu_safe_defaults, setup_logging
from toolkit.configs import make_parser as make_config_parser
from toolkit.distributed import is_main_process, wait_for_everyone
from toolkit.methods.lmcor.card import CITATION, DESCRIPTION
from toolkit.methods.lmcor.config import LMCorConfig
from toolkit.methods.lmcor.data import (
    budgeted_format,
    candidates_for_splits,
    corrector_examples,
    load_splits,
)
from toolkit.methods.lmcor.evaluation import (
    evaluate_run,
    generate_sharded,
    learning_curve_callbacks,
    model_card,
    results_markdown,
    training_summary,
)
from toolkit.models.students import load_student
from toolkit.publishing.export import publish_student
from toolkit.run import Push, finish_run
from toolkit.runtime import configure_threads
from toolkit.teachers import TeacherConfig
from toolkit.training.student_training import make_trainer, tokenize_pairs
from toolkit.training.tracking import dev_curve, log_final_metrics, require_tensorboard, resume_checkpoint

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "lmcor" / "default.yaml"
# Which predictions.jsonl columns the report shows as input, output, references and source.
PREDICTION_COLUMNS = {
    "input": "input",
    "prediction": "prediction",
    "references": "references",
    "source": "baseline:source copy",
}


@dataclass
class ScriptArguments:
    """The teacher that fills in missing candidates, and the corrector's decoding."""

    teacher_backend: str = field(default="hf", metadata={"help": "Candidate teacher backend: hf / openai / vllm."})
    teacher_model: str = field(default="local:smollm2-135m", metadata={"help": "Teacher model."})
    teacher_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible server URL."})
    teacher_api_key: str | None = field(default=None, metadata={"help": "API key (else $OPENAI_API_KEY)."})
    teacher_batch_size: int = field(default=16, metadata={"help": "hf teacher: prompts per generate() call."})
    num_beams: int = field(default=1, metadata={"help": "Corrector decoding: 1 = greedy, > 1 = beam search."})
    max_new_tokens: int = field(default=64, metadata={"help": "Corrector output length cap."})
    gen_batch_size: int = field(default=16, metadata={"help": "Corrector generation batch size."})
    eval_generate_steps: list[int] = field(default_factory=list, metadata={"help": "Also score the test at steps."})

    def __post_init__(self):
        if self.num_beams < 1 or self.max_new_tokens < 1 or self.gen_batch_size < 1:
            raise ValueError("num_beams, max_new_tokens and gen_batch_size must be >= 1")

    def teacher(self) -> TeacherConfig:
        return TeacherConfig(
            backend=self.teacher_backend,
            model=self.teacher_model,
            base_url=self.teacher_base_url,
            api_key=self.teacher_api_key,
            batch_size=self.teacher_batch_size,
        )


@dataclass
class ModelArguments:
    """The corrector (student) model."""

    model_name_or_path: str = field(default="local:smollm2-135m", metadata={"help": "Seq2seq or causal LM."})
    lora: bool = field(default=True, metadata={"help": "Train a LoRA adapter instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "LoRA target modules."})
    quantization: str | None = field(default=None, metadata={"help": "None or 4bit (QLoRA, causal only)."})
    chat_template: bool = field(default=True, metadata={"help": "Causal: wrap the input in the chat template."})
    max_source_len: int = field(default=256, metadata={"help": "Max corrector input tokens."})
    max_target_len: int = field(default=64, metadata={"help": "Max target tokens (eos included)."})
    base_model_id: str | None = field(default=None, metadata={"help": "Hub id the adapter names as its base."})
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of model_name_or_path."})
    push_merged: bool = field(default=False, metadata={"help": "Push merged weights that need no base."})

    def __post_init__(self):
        if self.quantization not in (None, "4bit") or self.max_source_len < 8 or self.max_target_len < 2:
            raise ValueError("quantization must be None or '4bit', max_source_len >= 8 and max_target_len >= 2")


def make_parser():
    return make_config_parser([ScriptArguments, LMCorConfig, ModelArguments, TrainingArguments])


def main(
    script_args: ScriptArguments, config: LMCorConfig, model_args: ModelArguments, training_args: TrainingArguments
) -> dict | None:
    setup_logging()
    configure_threads()
    apply_cpu_safe_defaults(training_args)
    require_tensorboard(training_args.report_to)  # fail now, not after the teacher calls
    resume = resume_checkpoint(training_args)  # a path, or `true` = the latest checkpoint in output_dir
    push = training_args.push_to_hub
    training_args.push_to_hub = False  # finish_run pushes, once, at the end
    out_dir = Path(training_args.output_dir)
    timings = {}
    t_start = time.perf_counter()

    # ---- Data ---- pool rows -> group-aware splits -> k teacher candidates per row (the candidates job, cached)
    splits = load_splits(config)
    with training_args.main_process_first(desc="teacher candidates"):  # rank 0 fills the cache, others read it
        splits = candidates_for_splits(splits, config, script_args.teacher())
    timings["candidates_s"] = time.perf_counter() - t_start

    # ---- Model ---- the corrector reads "source: x || candidates: c1 || c2 ..." (cut fairly when too long)
    model, tokenizer, seq2seq = load_student(
        model_args.model_name_or_path,
        lora=model_args.lora,
        lora_r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        lora_target_modules=model_args.lora_target_modules,
        quantization=model_args.quantization,
        revision=model_args.model_revision,
    )
    fmt = budgeted_format(config, tokenizer, model_args.max_source_len, is_seq2seq=seq2seq)
    examples = corrector_examples(splits, config, fmt, seed=training_args.seed)
    test_rows = splits["test"]
    test_inputs = examples["test"]
    chat = model_args.chat_template and not seq2seq
    encoding = {"is_seq2seq": seq2seq, "max_source_len": model_args.max_source_len, "chat_template": chat}
    pairs = {**encoding, "max_target_len": model_args.max_target_len}
    train_features = tokenize_pairs(examples["train"], tokenizer, **pairs)
    dev_features = tokenize_pairs(examples["dev"], tokenizer, **pairs) if examples["dev"] else None
    if not examples["dev"]:
        training_args.eval_strategy = "no"  # no dev rows: no dev loss
    gen_kwargs = {
        "max_new_tokens": script_args.max_new_tokens,
        "num_beams": script_args.num_beams,
        "batch_size": script_args.gen_batch_size,
        **encoding,
    }

    # ---- Trainer ---- (input) -> reference, the loss on the reference tokens only
    if training_args.include_num_input_tokens_seen in (False, "no"):
        training_args.include_num_input_tokens_seen = "non_padding"
    callbacks = learning_curve_callbacks(
        script_args.eval_generate_steps, config, tokenizer, test_rows, test_inputs, gen_kwargs
    )
    trainer = make_trainer(model, tokenizer, training_args, train_features, dev_features, callbacks=callbacks)

    # ---- Train ----
    t0 = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume)
    timings["train_s"] = time.perf_counter() - t0
    trainer.save_model(str(out_dir))  # every rank: a sharded model gathers its weights, the main process writes

    # ---- Evaluate ---- every rank decodes its share; the corrector and every training-free selector are scored on
    # the same test rows and candidates, on the main process
    t0 = time.perf_counter()
    predictions = generate_sharded(
        trainer.model, tokenizer, test_inputs, show_progress=is_main_process(), **gen_kwargs
    )
    timings["generate_s"] = time.perf_counter() - t0
    if not is_main_process():
        wait_for_everyone()
        return None
    results = evaluate_run(config, test_rows, test_inputs, predictions, dev_rows=splits["dev"])
    results["learning_curve"] = callbacks[0].history if callbacks else []
    results["dev_curve"] = dev_curve(trainer.state.log_history)  # the dev loss a plan chooses the step count on
    results["training"] = training_summary(
        train_result.metrics,
        examples,
        trainer.state.num_input_tokens_seen,
        timings["train_s"],
        world_size=training_args.world_size,
    )
    results["distributed"] = {
        "distributed_type": trainer.accelerator.distributed_type.value,
        "num_processes": trainer.accelerator.num_processes,
        "wrapper": type(trainer.model_wrapped).__name__,
    }
    timings["total_s"] = time.perf_counter() - t_start

    # ---- Finish ----
    tokenizer.save_pretrained(out_dir)
    repo_id = training_args.hub_model_id or out_dir.name
    card = model_card(
        config,
        results,
        splits,
        base_model=model_args.model_name_or_path,
        adapter=model_args.lora or model_args.quantization is not None,
        model_name=Path(repo_id).name,
        description=DESCRIPTION,
    )
    card, push_folder = publish_student(
        out_dir,
        card,
        repo_id,
        model_name_or_path=model_args.model_name_or_path,
        base_model_id=model_args.base_model_id,
        revision=model_args.model_revision,
        merge=model_args.push_merged,
        data_rows={split: len(rows) for split, rows in splits.items()},
        citation=CITATION,
        dataset_revision=config.dataset_revision,
    )
    hub = Push(repo_id if push else None, training_args.hub_token, bool(training_args.hub_private_repo), push_folder)
    log_final_metrics({"test": results["scores"]}, trainer=trainer)  # the results table, every system
    predictions = results.pop("predictions")  # predictions.jsonl, not metrics.json
    finish_run(
        out_dir,
        metrics=results,
        tables={"results": results["table"]},
        timings=timings,
        tokens=results["training"]["tokens_seen_non_padding"],
        results_md=results_markdown(results),
        predictions=predictions,
        prediction_columns=PREDICTION_COLUMNS,
        log_history=trainer.state.log_history,
        card=card,
        card_metrics={"test": results["corrector"]},
        config={"script": script_args, "lmcor": config, "model": model_args, "training": training_args},
        push=hub,
    )
    print(f"\nLMCor on {config.task}:\n\n{results_markdown(results)}")
    print("\n".join(f"{name} signature: {sig}" for name, sig in results["signatures"].items()))
    wait_for_everyone()
    return results


def argv_with_default_config(argv: list[str]) -> list[str]:
    """``accelerate launch recipes/lmcor.py`` with no ``--config`` runs the embedded offline default."""
    has_config = any(arg == "--config" or arg.startswith("--config=") for arg in argv)
    return argv if has_config else ["--config", str(DEFAULT_CONFIG), *argv]


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config(argv_with_default_config(sys.argv[1:])))
