"""LMCor (Vernikos et al. 2023): a small corrector rewrites k LLM candidates of an input into the target.

With no arguments it runs the offline demo (``recipes/configs/lmcor/default.yaml``: the shipped GEC set, candidates
from the local SmolLM2 teacher, a SmolLM2 LoRA corrector) and prints the results table:

    accelerate launch recipes/lmcor.py
    accelerate launch recipes/lmcor.py --config recipes/configs/lmcor/wmt22_ende.yaml
    accelerate launch recipes/lmcor.py --config recipes/configs/lmcor/e2e.yaml --test_path e2e:test
    # two CPU processes (gloo); `--cpu --num_processes 2` or a use_cpu config silently starts ONE process:
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no recipes/lmcor.py --config ...

The run directory gets the corrector (or LoRA adapter) and toolkit.run.ARTIFACTS (every baseline on the same rows).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from toolkit.configs import apply_cpu_safe_defaults, setup_logging
from toolkit.configs import make_parser as _make_parser
from toolkit.methods.lmcor import data as lmcor_data
from toolkit.methods.lmcor import evaluation as lmcor_eval
from toolkit.methods.lmcor import formats as lmcor
from toolkit.methods.lmcor.truncation import BudgetedFormat
from toolkit.models import students
from toolkit.publishing.export import publish_student
from toolkit.run import Push, finish_run
from toolkit.runtime import configure_threads
from toolkit.training.tracking import log_final_metrics, require_tensorboard, resume_checkpoint

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "lmcor" / "default.yaml"
DESCRIPTION = (
    "An LMCor corrector (Vernikos et al. 2023): a small model trained to read an input and k candidate outputs of a "
    "large model and rewrite them into one better output, at the cost of one small forward pass per input."
)
CITATION = """@inproceedings{vernikos-etal-2024-small,
  title = {Small Language Models Improve Giants by Rewriting Their Outputs},
  author = {Vernikos, Giorgos and Bra{\\v{z}}inskas, Arthur and Adamek, Jakub and Mallinson, Jonathan and
            Severyn, Aliaksei and Malmi, Eric},
  booktitle = {Proceedings of the 18th Conference of the European Chapter of the Association for Computational
               Linguistics (Volume 1: Long Papers)},
  year = {2024}
}"""


@dataclass
class LMCorArguments:
    """Data, candidate pool, corrector input format, teacher and evaluation settings."""

    task: str = field(default="demo_gec", metadata={"help": f"Pool: one of {sorted(lmcor.POOL_TASKS)}."})
    task_type: str | None = field(default=None, metadata={"help": "gec / mt / d2t (required for task=jsonl)."})
    data_dir: str | None = field(default=None, metadata={"help": "Real-data root (default $TOOLKIT_DATA_DIR)."})
    pool_path: str | None = field(default=None, metadata={"help": "Candidates dataset (data_gen/candidates.py)."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub revision of a pool_path on the Hub."})
    test_path: str | None = field(default=None, metadata={"help": "Official test set: a file, jfleg:dev, e2e:test."})
    dev_path: str | None = field(default=None, metadata={"help": "Official dev set, as test_path."})
    max_source_words: int | None = field(default=None, metadata={"help": "Drop pool rows with longer sources."})
    dev_size: float = field(default=0.1, metadata={"help": "Dev rows: int count (>= 1) or fraction."})
    test_size: float = field(default=0.2, metadata={"help": "Test rows: int count (>= 1) or fraction."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the deterministic group-aware split."})
    max_train_rows: int | None = field(default=None, metadata={"help": "Seeded subsample of the train split."})
    max_dev_rows: int | None = field(default=None, metadata={"help": "Seeded subsample of the dev split."})
    max_test_rows: int | None = field(default=None, metadata={"help": "Seeded subsample of the test split."})
    k: int = field(default=5, metadata={"help": "Candidates per corrector input."})
    no_candidates: bool = field(default=False, metadata={"help": "Baseline: source -> reference, same budget."})
    split_block: int = field(default=0, metadata={"help": "Split by blocks of this many pool rows (0 = groups)."})
    single_candidate: bool = field(default=False, metadata={"help": "Ablation: the first (greedy) candidate only."})
    separator: str = field(default=" <extra_id_0> ", metadata={"help": "Between source and candidates."})
    source_prefix: str = field(default="source: ", metadata={"help": "Before the source."})
    candidates_prefix: str = field(default="candidates: ", metadata={"help": "Before the first candidate."})
    shuffle_candidates: bool = field(default=True, metadata={"help": "Shuffle candidate order in training."})
    augment: int = field(default=1, metadata={"help": "Copies of each training example (new subsets/orders)."})
    multi_reference: bool = field(default=True, metadata={"help": "One training example per reference."})
    train_systems: list[str] = field(default_factory=list, metadata={"help": "Systems the corrector trains on."})
    test_systems: list[str] = field(default_factory=list, metadata={"help": "Unseen systems used at test time."})
    teacher_backend: str = field(default="hf", metadata={"help": "Candidate teacher backend: hf / openai / vllm."})
    teacher_model: str = field(default="local:smollm2-135m", metadata={"help": "Teacher model."})
    teacher_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible server URL."})
    teacher_api_key: str | None = field(default=None, metadata={"help": "API key (else $OPENAI_API_KEY)."})
    teacher_batch_size: int = field(default=16, metadata={"help": "hf teacher: prompts per generate() call."})
    num_demos: int = field(default=3, metadata={"help": "Few-shot demonstrations (from the train split)."})
    teacher_temperature: float = field(default=0.7, metadata={"help": "Temperature of the k-1 sampled candidates."})
    teacher_top_p: float = field(default=0.95, metadata={"help": "top_p of the sampled candidates."})
    teacher_max_tokens: int = field(default=64, metadata={"help": "Max tokens per candidate."})
    teacher_seed: int = field(default=0, metadata={"help": "Sampling seed."})
    cache_path: str | None = field(default=None, metadata={"help": "Generation cache (default under $TOOLKIT_CACHE)."})
    max_cost: float | None = field(default=None, metadata={"help": "USD budget for teacher calls."})
    num_beams: int = field(default=1, metadata={"help": "Corrector decoding: 1 = greedy, > 1 = beam search."})
    max_new_tokens: int = field(default=64, metadata={"help": "Corrector output length cap."})
    gen_batch_size: int = field(default=16, metadata={"help": "Corrector generation batch size."})
    eval_generate_steps: list[int] = field(default_factory=list, metadata={"help": "Also score the test at steps."})
    baseline_seed: int = field(default=0, metadata={"help": "Seed of the random-candidate baseline."})
    eval_tokenize: str = field(default="auto", metadata={"help": "ptb / none / auto (ptb for jfleg) before scoring."})

    def __post_init__(self):
        lmcor_data.check_arguments(self)  # fills task_type and eval_tokenize="auto"; raises on bad combinations


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
    return _make_parser([LMCorArguments, ModelArguments, TrainingArguments])


def main(script_args: LMCorArguments, model_args: ModelArguments, training_args: TrainingArguments) -> dict | None:
    setup_logging(), configure_threads(), apply_cpu_safe_defaults(training_args)  # fmt: skip
    require_tensorboard(training_args.report_to)  # fail now, not after the teacher calls
    resume = resume_checkpoint(training_args)  # a path, or `true` = the latest checkpoint in output_dir
    push, training_args.push_to_hub = training_args.push_to_hub, False  # finish_run pushes, once, at the end
    out_dir, timings, t_start = Path(training_args.output_dir), {}, time.perf_counter()

    # ---- Data ---- pool rows -> group-aware splits -> k teacher candidates per row (the candidates job, cached)
    pool = lmcor.load_pool(
        script_args.task,
        data_dir=script_args.data_dir,
        pool_path=script_args.pool_path,
        pool_revision=script_args.dataset_revision,
    )
    splits = lmcor_data.split_and_subsample(lmcor_data.filter_rows(pool, script_args), script_args)
    with training_args.main_process_first(desc="teacher candidates"):  # rank 0 fills the cache, others read it
        splits = lmcor_data.candidates_for_splits(splits, script_args)
    timings["candidates_s"] = time.perf_counter() - t_start

    # ---- Model ---- the corrector reads "source: x || candidates: c1 || c2 ..." (cut fairly when too long)
    model, tokenizer, seq2seq = students.load_student(
        model_args.model_name_or_path, lora=model_args.lora, lora_r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
        lora_target_modules=model_args.lora_target_modules, quantization=model_args.quantization,
        revision=model_args.model_revision,
    )  # fmt: skip
    fmt = lmcor.CorrectorFormat(script_args.separator, script_args.source_prefix, script_args.candidates_prefix)
    fmt = BudgetedFormat(fmt, tokenizer, model_args.max_source_len, is_seq2seq=seq2seq)
    examples = lmcor_data.corrector_examples(splits, script_args, fmt, seed=training_args.seed)
    train_ex, dev_ex, test_inputs, test_rows = examples["train"], examples["dev"], examples["test"], splits["test"]
    chat = model_args.chat_template and not seq2seq
    tok = {"is_seq2seq": seq2seq, "max_source_len": model_args.max_source_len, "chat_template": chat}
    pairs = {**tok, "max_target_len": model_args.max_target_len}
    train_feats = students.tokenize_pairs(train_ex, tokenizer, **pairs)
    dev_feats = students.tokenize_pairs(dev_ex, tokenizer, **pairs) if dev_ex else None
    training_args.eval_strategy = training_args.eval_strategy if dev_ex else "no"  # no dev rows: no dev loss
    gen_kwargs = {"max_new_tokens": script_args.max_new_tokens, "num_beams": script_args.num_beams,
                  "batch_size": script_args.gen_batch_size, **tok}  # fmt: skip

    # ---- Trainer ---- (input) -> reference, the loss on the reference tokens only
    if training_args.include_num_input_tokens_seen in (False, "no"):
        training_args.include_num_input_tokens_seen = "non_padding"
    callbacks = lmcor_eval.learning_curve_callbacks(script_args, tokenizer, test_rows, test_inputs, gen_kwargs)
    trainer = students.make_trainer(model, tokenizer, training_args, train_feats, dev_feats, callbacks=callbacks)

    # ---- Train ----
    t0 = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume)
    timings["train_s"] = time.perf_counter() - t0
    if not trainer.is_world_process_zero():
        trainer.accelerator.wait_for_everyone()
        return None

    # ---- Evaluate ---- the corrector and every training-free selector on the same test rows and candidates
    t0 = time.perf_counter()
    predictions = students.generate(trainer.model, tokenizer, test_inputs, show_progress=True, **gen_kwargs)
    timings["generate_s"] = time.perf_counter() - t0
    results = lmcor_eval.evaluate_run(script_args, test_rows, test_inputs, predictions, dev_rows=splits["dev"])
    results["learning_curve"] = callbacks[0].history if callbacks else []
    results["training"] = lmcor_eval.training_summary(
        train_result.metrics, examples, trainer.state.num_input_tokens_seen, timings["train_s"], training_args
    )
    results["timings"] = {**timings, "total_s": time.perf_counter() - t_start}

    # ---- Finish ----
    trainer.save_model(str(out_dir)), tokenizer.save_pretrained(out_dir)  # fmt: skip
    repo_id = training_args.hub_model_id or out_dir.name
    card = lmcor_eval.model_card(script_args, model_args, Path(repo_id).name, DESCRIPTION, results, splits)
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
        dataset_revision=script_args.dataset_revision,
    )
    hub = Push(repo_id if push else None, training_args.hub_token, bool(training_args.hub_private_repo), push_folder)
    log_final_metrics({"test": results["scores"]}, trainer=trainer)  # the results table, every system
    predictions = results.pop("predictions")
    finish_run(
        out_dir, metrics=results, results_md=lmcor_eval.results_markdown(results), predictions=predictions,
        log_history=trainer.state.log_history, card=card, card_metrics={"test": results["corrector"]},
        config={"script": script_args, "model": model_args, "training": training_args}, push=hub,
    )  # fmt: skip
    print(f"\nLMCor on {script_args.task}:\n\n{lmcor_eval.results_markdown(results)}")
    print("\n".join(f"{name} signature: {sig}" for name, sig in results["signatures"].items()))
    trainer.accelerator.wait_for_everyone()
    return results


def _argv_with_default_config(argv: list[str]) -> list[str]:
    """``accelerate launch recipes/lmcor.py`` with no ``--config`` runs the embedded offline default."""
    has_config = any(a == "--config" or a.startswith("--config=") for a in argv)
    return argv if has_config else ["--config", str(DEFAULT_CONFIG), *argv]


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config(_argv_with_default_config(sys.argv[1:])))
