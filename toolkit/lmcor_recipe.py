"""Run plumbing for ``recipes/lmcor.py``: config dataclasses, scoring, card, push (rows, candidates and
corrector examples live in :mod:`toolkit.lmcor_data`, re-exported here).

Kept out of the recipe so the script stays a thin, readable pipeline, and out of :mod:`toolkit.lmcor` so that
module stays about the method (pools, input format, selectors) rather than one script's I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit import lmcor
from toolkit.lmcor_data import (  # noqa: F401 - re-exported: the recipe and tests import them from here
    NAMED_SPLITS,
    candidates_for_splits,
    check_split_spec,
    corrector_examples,
    filter_rows,
    load_split_rows,
    split_and_subsample,
)

logger = logging.getLogger(__name__)

CORRECTOR = "LMCor corrector"
NO_CANDIDATES = "no-candidates model (source -> reference)"


@dataclass
class LMCorArguments:
    """Data, candidate pool, corrector input format, teacher and evaluation settings."""

    task: str = field(default="demo_gec", metadata={"help": f"Pool: one of {sorted(lmcor.POOL_TASKS)}."})
    task_type: str | None = field(default=None, metadata={"help": "gec / mt / d2t (required for task=jsonl)."})
    data_dir: str | None = field(default=None, metadata={"help": "Real-data root (default $TOOLKIT_DATA_DIR)."})
    pool_path: str | None = field(
        default=None, metadata={"help": "Candidates dataset from data_gen/candidates.py (JSONL / Arrow dir)."}
    )
    test_path: str | None = field(
        default=None,
        metadata={
            "help": "Official test set instead of a carved one: a local JSONL/CSV/TSV/Parquet file or Arrow dir "
            f"(source or mr, references, optional candidates/systems) or a named split {NAMED_SPLITS}."
        },
    )
    dev_path: str | None = field(default=None, metadata={"help": "Official dev set, as test_path."})
    max_source_words: int | None = field(
        default=None, metadata={"help": "Drop pool rows with longer sources (not rows of test_path / dev_path)."}
    )
    dev_size: float = field(default=0.1, metadata={"help": "Dev rows: int count (>= 1) or fraction."})
    test_size: float = field(default=0.2, metadata={"help": "Test rows: int count (>= 1) or fraction."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the deterministic group-aware split."})
    max_train_rows: int | None = field(default=None, metadata={"help": "Seeded subsample of the train split."})
    max_dev_rows: int | None = field(default=None, metadata={"help": "Seeded subsample of the dev split."})
    max_test_rows: int | None = field(default=None, metadata={"help": "Seeded subsample of the test split."})
    k: int = field(default=5, metadata={"help": "Candidates per corrector input."})
    no_candidates: bool = field(
        default=False,
        metadata={"help": "Baseline: the same student trained source -> reference (no candidates), same budget."},
    )
    split_block: int = field(
        default=0,
        metadata={
            "help": "Split by blocks of this many consecutive pool rows (set before max_source_words filtering): "
            "a stand-in for documents where the data has no document ids (WMT22 here). 0 = the pool's groups."
        },
    )
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
    eval_generate_steps: list[int] = field(
        default_factory=list, metadata={"help": "Also decode + score the test rows at these steps (learning curve)."}
    )
    baseline_seed: int = field(default=0, metadata={"help": "Seed of the random-candidate baseline."})
    eval_tokenize: str = field(
        default="auto",
        metadata={
            "help": "Tokenise every hypothesis (corrector, baselines, systems) before scoring: 'ptb' (Penn Treebank, "
            "as JFLEG's references), 'none', or 'auto' (ptb for task=jfleg, else none)."
        },
    )

    def __post_init__(self):
        if self.task not in lmcor.POOL_TASKS:
            raise ValueError(f"task must be one of {sorted(lmcor.POOL_TASKS)}, got {self.task!r}")
        self.task_type = self.task_type or lmcor.POOL_TASKS[self.task]
        if self.task_type not in lmcor.TASK_TYPES:
            raise ValueError(f"task_type must be one of {lmcor.TASK_TYPES} (set it for task=jsonl)")
        if self.task == "jsonl" and not self.pool_path:
            raise ValueError("task=jsonl needs --pool_path")
        if self.k < 1 or self.augment < 1 or self.num_beams < 1 or self.split_block < 0:
            raise ValueError("k, augment and num_beams must be >= 1, split_block >= 0")
        if self.no_candidates and self.single_candidate:
            raise ValueError("no_candidates and single_candidate exclude each other")
        if self.eval_tokenize == "auto":
            self.eval_tokenize = "ptb" if self.task == "jfleg" else "none"
        if self.eval_tokenize not in ("ptb", "none"):
            raise ValueError(f"eval_tokenize must be auto, ptb or none, got {self.eval_tokenize!r}")
        if set(self.train_systems) & set(self.test_systems):
            raise ValueError(f"train and test systems overlap: {set(self.train_systems) & set(self.test_systems)}")
        if bool(self.train_systems) != bool(self.test_systems):
            raise ValueError("give both train_systems and test_systems (held-out systems), or neither")
        for name in ("test_path", "dev_path"):
            check_split_spec(name, getattr(self, name))
        if self.test_path and self.test_path == self.dev_path:
            raise ValueError(f"test_path and dev_path are the same ({self.test_path}): dev would select on test")

    def teacher_config(self):
        from toolkit.teachers import TeacherConfig

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

    def __post_init__(self):
        if self.quantization not in (None, "4bit"):
            raise ValueError(f"quantization must be None or '4bit', got {self.quantization!r}")
        if self.max_source_len < 8 or self.max_target_len < 2:
            raise ValueError("max_source_len must be >= 8 and max_target_len >= 2")


def hyp_tokenize(args: LMCorArguments) -> str | None:
    """The hypothesis tokenisation every row of the run's tables uses (``None`` = whitespace only)."""
    return None if args.eval_tokenize == "none" else args.eval_tokenize


def corrector_scores(args: LMCorArguments, rows: Sequence[Mapping], predictions: Sequence[str]):
    return lmcor.score_outputs(
        args.task_type,
        [r["source"] for r in rows],
        predictions,
        [r["references"] for r in rows],
        tokenize=hyp_tokenize(args),
    )


def evaluate_run(
    args: LMCorArguments,
    rows: list[dict],
    inputs: list[str],
    predictions: list[str],
    *,
    dev_rows: Sequence[Mapping] = (),
) -> dict[str, Any]:
    """Score the corrector and every baseline on the same test rows; build the results table.

    The best single system (held-out-system runs) is chosen on ``dev_rows`` and their references, then reported on
    the test rows; without dev rows that row is left out. Every hypothesis gets the same preprocessing
    (``args.eval_tokenize``); oracle rows are >= every selector row on their own metric.
    """
    k = 1 if args.single_candidate else args.k
    systems = args.test_systems or None
    tokenize = hyp_tokenize(args)
    best_name, per_system_dev, single = None, {}, {}
    if systems and dev_rows:
        best_name, per_system_dev, best_out = lmcor.best_single_system(
            dev_rows, rows, task=args.task_type, systems=systems, tokenize=tokenize
        )
        single = {f"best single system ({best_name}, chosen on dev)": best_out}
    elif systems:
        logger.warning("No dev rows: the best-single-system row is left out (it must not be chosen on test rows)")
    baselines = lmcor.baseline_outputs(
        rows, task=args.task_type, k=k, systems=systems, seed=args.baseline_seed, tokenize=tokenize,
        extra_starts=single,
    )  # fmt: skip
    metric_names = list(lmcor.TASK_METRICS[args.task_type])
    oracles = [lmcor.oracle_label(m) for m in metric_names]
    outputs = {n: o for n, o in baselines.items() if n not in oracles}
    outputs.update(single)
    outputs.update({n: baselines[n] for n in oracles})
    model_row = NO_CANDIDATES if args.no_candidates else CORRECTOR
    outputs[model_row] = predictions
    sources, refs = [r["source"] for r in rows], [r["references"] for r in rows]
    scores, signatures = {}, {}
    for name, hyps in outputs.items():
        scores[name], sigs = lmcor.score_outputs(args.task_type, sources, hyps, refs, tokenize=tokenize)
        signatures.update(sigs)
    table = [{"method": n, **{m: scores[n][m] for m in metric_names}} for n in outputs]
    preds = [
        {"id": r.get("id"), "input": x, "prediction": p, "references": r["references"],
         **{f"baseline:{n}": outputs[n][i] for n in outputs if n != model_row}}
        for i, (r, x, p) in enumerate(zip(rows, inputs, predictions))
    ]  # fmt: skip
    return {
        "task": args.task,
        "task_type": args.task_type,
        "scores": scores,
        "corrector": scores[model_row],
        "model_row": model_row,
        "per_system_dev": per_system_dev,
        "best_single_system": best_name,
        "signatures": signatures,
        "table": table,
        "columns": ["method", *metric_names],
        "predictions": preds,
    }


def eval_at_steps_callback(steps, tokenizer, rows, inputs, args: LMCorArguments, gen_kwargs: dict):
    """A callback that decodes + scores the test rows at the given global steps (learning curve)."""
    from transformers import TrainerCallback

    from toolkit.students import generate

    class EvalAtSteps(TrainerCallback):
        def __init__(self):
            self.steps, self.history = set(steps), []

        def on_step_end(self, training_args, state, control, model=None, **kwargs):
            if state.global_step in self.steps and state.is_world_process_zero:
                preds = generate(model, tokenizer, inputs, **gen_kwargs)
                scores, _ = corrector_scores(args, rows, preds)
                self.history.append({"step": state.global_step, **scores})
                logger.info("step %d corrector: %s", state.global_step, scores)

    return EvalAtSteps()


def build_lineage(args: LMCorArguments, model_args: ModelArguments, splits: dict[str, list[dict]]):
    """The card's lineage: who made the candidates, and every teacher request (and its cost) the run used.

    Teacher calls and cost sum over the train, dev *and* test candidates (all were paid for); the dataset
    fingerprint stays that of the training rows.
    """
    from toolkit.hub import Lineage

    train_rows = splits["train"]
    if args.task in lmcor.WMT22_POOLS:
        systems = args.train_systems or sorted({s for r in train_rows for s in r.get("systems", [])})
        pair = lmcor.WMT22_POOLS[args.task]
        return Lineage(
            teacher_id=f"WMT22 {pair} system outputs: " + ", ".join(systems),
            generated_dataset=f"wmt22_general ({pair} system-outputs)",
            base_model=model_args.model_name_or_path,
            extra={"test_systems (unseen)": ", ".join(args.test_systems)} if args.test_systems else {},
        )
    per_split = {name: Lineage.from_generated(rows) for name, rows in splits.items()}
    lineage = Lineage.from_generated(
        [r for rows in splits.values() for r in rows],
        generated_dataset=args.pool_path or args.task,
        base_model=model_args.model_name_or_path,
    )
    lineage.dataset_fingerprint = per_split["train"].dataset_fingerprint
    if lineage.num_teacher_calls:
        calls = {name: part.num_teacher_calls or 0 for name, part in per_split.items()}
        lineage.extra["teacher calls by split"] = ", ".join(f"{name} {n}" for name, n in calls.items())
    return lineage


def write_model_card(out_dir: Path, args, model_args, training_args, results: dict, lineage) -> Path:
    from toolkit.hub import render_model_card, save_card
    from toolkit.reporting import markdown_table

    sigs = "\n".join(f"- {k}: `{v}`" for k, v in results["signatures"].items()) or "n/a"
    results_md = markdown_table(results["table"], columns=results["columns"])
    card = render_model_card(
        model_name=Path(training_args.hub_model_id or out_dir.name).name,
        base_model=model_args.model_name_or_path,
        task=args.task_type,
        recipe="lmcor",
        metrics={"test": results["corrector"]},
        lineage=lineage,
        training_config={"script": args, "model": model_args, "training": training_args.to_dict()},
        datasets=[args.task],
        library_name="peft" if model_args.lora or model_args.quantization else "transformers",
        extra_sections={
            "Results (same test rows)": results_md + f"\n{results['training'].get('test_rows')} test rows.",
            "sacrebleu signatures": sigs,
            "Input format": f"`{args.source_prefix}<input>{args.separator}{args.candidates_prefix}<c1>"
            f"{args.separator}<c2> ...` with k={args.k} candidates.",
        },
    )
    return save_card(out_dir, card)


def push_run(out_dir: Path, training_args) -> str:
    from toolkit.hub import push_to_hub

    repo_id = training_args.hub_model_id or out_dir.name
    url = push_to_hub(out_dir, repo_id, token=training_args.hub_token, private=bool(training_args.hub_private_repo))
    logger.info("Pushed the corrector to %s", url)
    return url
