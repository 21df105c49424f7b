"""LMCor: train a small corrector that rewrites k LLM candidates into the target (Vernikos et al. 2023).

With no arguments it runs the offline demo (``recipes/configs/lmcor/default.yaml``: the shipped GEC demo set,
candidates from the local SmolLM2 teacher, a SmolLM2 LoRA corrector) and prints the results table:

    accelerate launch recipes/lmcor.py
    accelerate launch recipes/lmcor.py --config recipes/configs/lmcor/wmt22_ende.yaml
    # train on one file, test on an official test set (a local file, or e2e:test / jfleg:dev):
    accelerate launch recipes/lmcor.py --config recipes/configs/lmcor/e2e.yaml --test_path e2e:test
    # two CPU processes (gloo); `--cpu --num_processes 2` or a use_cpu config silently starts ONE process:
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no recipes/lmcor.py --config ...

The run directory (``--output_dir``) receives the corrector (or its LoRA adapter), ``metrics.json``,
``results.md`` (corrector next to every baseline on the same test rows), ``predictions.jsonl``,
``training_curves.png``, the model card ``README.md`` and ``run_config.json``; ``--push_to_hub`` pushes it.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from toolkit.configs import apply_cpu_safe_defaults, save_config, setup_logging
from toolkit.configs import make_parser as _make_parser
from toolkit.lmcor_recipe import LMCorArguments, ModelArguments
from toolkit.report_artifacts import report_from_run_dir
from toolkit.runtime import configure_threads
from toolkit.tracking import require_tensorboard, resume_checkpoint

logger = logging.getLogger("lmcor")
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "lmcor" / "default.yaml"


def make_parser():
    from transformers import TrainingArguments

    return _make_parser([LMCorArguments, ModelArguments, TrainingArguments])


def main(script_args: LMCorArguments, model_args: ModelArguments, training_args) -> dict:
    from toolkit import lmcor, reporting, students
    from toolkit.lmcor_recipe import (
        build_lineage,
        candidates_for_splits,
        corrector_examples,
        eval_at_steps_callback,
        evaluate_run,
        filter_rows,
        push_run,
        split_and_subsample,
        write_model_card,
    )
    from toolkit.lmcor_truncation import BudgetedFormat

    setup_logging()
    configure_threads()
    apply_cpu_safe_defaults(training_args)
    require_tensorboard(training_args.report_to)  # fail now, not after the teacher calls
    resume = resume_checkpoint(training_args)  # a path, or `true` = the latest checkpoint in output_dir
    push, training_args.push_to_hub = training_args.push_to_hub, False  # we push ourselves (toolkit.hub) at the end
    out_dir = Path(training_args.output_dir)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    # ---- Data ----
    pool = lmcor.load_pool(script_args.task, data_dir=script_args.data_dir, pool_path=script_args.pool_path)
    splits = split_and_subsample(filter_rows(pool, script_args), script_args)
    t0 = time.perf_counter()
    with training_args.main_process_first(desc="teacher candidates"):  # rank 0 fills the cache, others read it
        splits = candidates_for_splits(splits, script_args)
    timings["candidates_s"] = time.perf_counter() - t0

    # ---- Tokenizer ----
    # ---- Model ----
    model, tokenizer, seq2seq = students.load_student(
        model_args.model_name_or_path, lora=model_args.lora, lora_r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
        lora_target_modules=model_args.lora_target_modules, quantization=model_args.quantization,
    )  # fmt: skip

    # ---- Corrector inputs: over-long ones are cut fairly (source and every candidate), never the last candidates ----
    fmt = BudgetedFormat(
        lmcor.CorrectorFormat(script_args.separator, script_args.source_prefix, script_args.candidates_prefix),
        tokenizer, model_args.max_source_len, is_seq2seq=seq2seq,
    )  # fmt: skip
    examples = corrector_examples(splits, script_args, fmt, seed=training_args.seed)
    train_ex, dev_ex, test_inputs, test_rows = examples["train"], examples["dev"], examples["test"], splits["test"]
    logger.info("Examples: %d train, %d dev; %d test rows", len(train_ex), len(dev_ex), len(test_rows))
    tok_kwargs = {
        "is_seq2seq": seq2seq,
        "max_source_len": model_args.max_source_len,
        "max_target_len": model_args.max_target_len,
        "chat_template": model_args.chat_template and not seq2seq,
    }
    train_feats = students.tokenize_pairs(train_ex, tokenizer, **tok_kwargs)
    dev_feats = students.tokenize_pairs(dev_ex, tokenizer, **tok_kwargs) if dev_ex else None
    if dev_feats is None:
        training_args.eval_strategy = "no"
    gen_kwargs = {
        "is_seq2seq": seq2seq,
        "max_new_tokens": script_args.max_new_tokens,
        "num_beams": script_args.num_beams,
        "batch_size": script_args.gen_batch_size,
        "max_source_len": model_args.max_source_len,
        "chat_template": tok_kwargs["chat_template"],
    }

    # ---- Trainer ----
    if training_args.include_num_input_tokens_seen in (False, "no"):
        training_args.include_num_input_tokens_seen = "non_padding"
    callbacks = []
    if script_args.eval_generate_steps:
        callbacks.append(
            eval_at_steps_callback(
                script_args.eval_generate_steps, tokenizer, test_rows, test_inputs, script_args, gen_kwargs
            )
        )
    trainer = students.make_trainer(model, tokenizer, training_args, train_feats, dev_feats, callbacks=callbacks)

    # ---- Train ----
    t0 = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume)
    timings["train_s"] = time.perf_counter() - t0
    tokens_seen = int(trainer.state.num_input_tokens_seen or 0)

    # ---- Evaluate ----
    results = None
    if trainer.is_world_process_zero():
        t0 = time.perf_counter()
        predictions = students.generate(trainer.model, tokenizer, test_inputs, show_progress=True, **gen_kwargs)
        timings["generate_s"] = time.perf_counter() - t0
        results = evaluate_run(script_args, test_rows, test_inputs, predictions, dev_rows=splits["dev"])
        results["learning_curve"] = callbacks[0].history if callbacks else []
        results["training"] = {
            **train_result.metrics,
            "train_examples": len(train_ex),
            "dev_examples": len(dev_ex),
            "test_rows": len(test_rows),
            "inputs_cut_to_max_source_len": examples["inputs_cut"],
            "tokens_seen_non_padding": tokens_seen,
            # Non-padding tokens per second per process; with DDP, multiply by world size for the total.
            "train_tokens_per_s": tokens_seen / timings["train_s"] if timings["train_s"] else None,
            "world_size": training_args.world_size,
        }
        timings["total_s"] = time.perf_counter() - t_start
        results["timings"] = timings

    # ---- Save / push ----
    if trainer.is_world_process_zero():
        trainer.save_model(str(out_dir))
        tokenizer.save_pretrained(out_dir)
        reporting.write_metrics(out_dir, results)
        reporting.write_table(out_dir, results["table"], columns=results["columns"])
        reporting.write_jsonl(out_dir / "predictions.jsonl", results.pop("predictions"))
        reporting.plot_training_curves(trainer.state.log_history, out_dir / "training_curves.png")
        save_config(out_dir / "run_config.json", script=script_args, model=model_args, training=training_args)
        lineage = build_lineage(script_args, model_args, splits)
        write_model_card(out_dir, script_args, model_args, training_args, results, lineage)
        report_from_run_dir(out_dir)  # report.html: tables, curves, sample rows, lineage, command
        print(f"\nLMCor on {script_args.task}: {len(test_rows)} test rows\n")
        print(reporting.markdown_table(results["table"], columns=results["columns"]))
        for name, sig in results["signatures"].items():
            print(f"{name} signature: {sig}")
        if push:
            push_run(out_dir, training_args)
    trainer.accelerator.wait_for_everyone()
    return results


def _argv_with_default_config(argv: list[str]) -> list[str]:
    """``accelerate launch recipes/lmcor.py`` with no ``--config`` runs the embedded offline default."""
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
        return ["--config", str(DEFAULT_CONFIG), *argv]
    return argv


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config(_argv_with_default_config(sys.argv[1:])))
