"""LMCor evaluation: the corrector and every baseline scored on the same test rows, the learning curve, lineage.

``args`` is the recipe's ``LMCorArguments`` (``recipes/lmcor.py``); only its fields are read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

from toolkit.methods.lmcor import formats as lmcor
from toolkit.methods.lmcor import scoring as lmcor_scoring
from toolkit.methods.lmcor import selectors as lmcor_selectors
from toolkit.models.students import generate
from toolkit.publishing.hub import Lineage
from toolkit.publishing.reporting import markdown_table
from toolkit.run import Card

logger = logging.getLogger(__name__)

CORRECTOR = "LMCor corrector"
NO_CANDIDATES = "no-candidates model (source -> reference)"

__all__ = [
    "CORRECTOR", "NO_CANDIDATES", "EvalAtSteps", "build_lineage", "corrector_scores", "evaluate_run",
    "learning_curve_callbacks", "model_card", "results_markdown", "training_summary",
]  # fmt: skip


def hyp_tokenize(args) -> str | None:
    """The hypothesis tokenisation every row of the run's tables uses (``None`` = whitespace only)."""
    return None if args.eval_tokenize == "none" else args.eval_tokenize


def corrector_scores(args, rows: Sequence[Mapping], predictions: Sequence[str]):
    return lmcor_scoring.score_outputs(
        args.task_type,
        [r["source"] for r in rows],
        predictions,
        [r["references"] for r in rows],
        tokenize=hyp_tokenize(args),
    )


def evaluate_run(
    args,
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
        best_name, per_system_dev, best_out = lmcor_scoring.best_single_system(
            dev_rows, rows, task=args.task_type, systems=systems, tokenize=tokenize
        )
        single = {f"best single system ({best_name}, chosen on dev)": best_out}
    elif systems:
        logger.warning("No dev rows: the best-single-system row is left out (it must not be chosen on test rows)")
    baselines = lmcor_selectors.baseline_outputs(
        rows, task=args.task_type, k=k, systems=systems, seed=args.baseline_seed, tokenize=tokenize,
        extra_starts=single,
    )  # fmt: skip
    metric_names = list(lmcor.TASK_METRICS[args.task_type])
    oracles = [lmcor_scoring.oracle_label(m) for m in metric_names]
    outputs = {n: o for n, o in baselines.items() if n not in oracles}
    outputs.update(single)
    outputs.update({n: baselines[n] for n in oracles})
    model_row = NO_CANDIDATES if args.no_candidates else CORRECTOR
    outputs[model_row] = predictions
    sources, refs = [r["source"] for r in rows], [r["references"] for r in rows]
    scores, signatures = {}, {}
    for name, hyps in outputs.items():
        scores[name], sigs = lmcor_scoring.score_outputs(args.task_type, sources, hyps, refs, tokenize=tokenize)
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


class EvalAtSteps(TrainerCallback):
    """Decodes + scores the test rows at the given global steps; the learning curve is in ``history``."""

    def __init__(self, steps, tokenizer, rows, inputs, args, gen_kwargs: dict):
        self.steps, self.history = set(steps), []
        self.tokenizer, self.rows, self.inputs, self.args, self.gen_kwargs = tokenizer, rows, inputs, args, gen_kwargs

    def on_step_end(self, training_args, state, control, model=None, **kwargs):
        if state.global_step in self.steps and state.is_world_process_zero:
            preds = generate(model, self.tokenizer, self.inputs, **self.gen_kwargs)
            scores, _ = corrector_scores(self.args, self.rows, preds)
            self.history.append({"step": state.global_step, **scores})
            logger.info("step %d corrector: %s", state.global_step, scores)


def learning_curve_callbacks(args, tokenizer, rows, inputs, gen_kwargs: dict) -> list[EvalAtSteps]:
    """``[EvalAtSteps]`` at ``args.eval_generate_steps``, or ``[]`` when none are asked for."""
    steps = args.eval_generate_steps
    return [EvalAtSteps(steps, tokenizer, rows, inputs, args, gen_kwargs)] if steps else []


def build_lineage(args, model_args, splits: dict[str, list[dict]]):
    """The card's lineage: who made the candidates, and every teacher request (and its cost) the run used.

    Teacher calls and cost sum over the train, dev *and* test candidates (all were paid for); the dataset
    fingerprint stays that of the training rows.
    """
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


def training_summary(
    train_metrics: Mapping, examples: Mapping, tokens_seen: int | None, train_s: float, training_args
):
    """The run's ``training`` block: trainer metrics, example counts, cut inputs, non-padding tokens per second."""
    return {
        **train_metrics, "train_examples": len(examples["train"]), "dev_examples": len(examples["dev"]),
        "test_rows": len(examples["test"]), "inputs_cut_to_max_source_len": examples["inputs_cut"],
        "tokens_seen_non_padding": int(tokens_seen or 0), "world_size": training_args.world_size,
        # Non-padding tokens per second per process; with DDP, multiply by world size for the total.
        "train_tokens_per_s": int(tokens_seen or 0) / train_s if train_s else None,
    }  # fmt: skip


def results_markdown(results: Mapping[str, Any]) -> str:
    """The results table (every method on the same test rows) and the row count."""
    table = markdown_table(results["table"], columns=results["columns"])
    return f"{table}\n{results['training']['test_rows']} test rows (the same rows for every method).\n"


def model_card(args, model_args, model_name: str, description: str, results: Mapping, splits) -> Card:
    """The corrector's card: lineage (who made the candidates, every teacher call), signatures, input format."""
    sigs = "\n".join(f"- {k}: `{v}`" for k, v in results["signatures"].items()) or "n/a"
    sep = args.separator
    fmt = f"`{args.source_prefix}<input>{sep}{args.candidates_prefix}<c1>{sep}<c2> ...` with k={args.k} candidates."
    return Card(
        base_model=model_args.model_name_or_path, task=args.task_type, recipe="lmcor", description=description,
        model_name=model_name, datasets=[args.task], lineage=build_lineage(args, model_args, splits),
        library_name="peft" if model_args.lora or model_args.quantization else "transformers",
        extra_sections={"sacrebleu signatures": sigs, "Input format": fmt},
    )  # fmt: skip
