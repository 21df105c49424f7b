"""LMCor evaluation: the corrector and every baseline scored on the same test rows, the learning curve, the card.

Test generation runs on every rank through :func:`toolkit.distributed.map_sharded` (each rank decodes its share of
the rows, the outputs are gathered in order), so a sharded model (FSDP, ZeRO-3) makes its forward passes on every
rank at once. The main process scores the gathered outputs and writes the run's artifacts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

from toolkit.distributed import is_main_process, map_sharded
from toolkit.methods.lmcor.config import WMT22_POOLS, LMCorConfig
from toolkit.methods.lmcor.data import eval_candidates
from toolkit.methods.lmcor.reranker import map_to_candidates
from toolkit.methods.lmcor.scoring import best_single_system, score_outputs, system_outputs
from toolkit.methods.lmcor.selectors import baseline_outputs, oracle_label
from toolkit.models.students import generate
from toolkit.publishing.lineage import Lineage
from toolkit.publishing.reporting import markdown_table
from toolkit.run import Card

logger = logging.getLogger(__name__)

CORRECTOR = "LMCor corrector"
NO_CANDIDATES = "no-candidates model (source -> reference)"
RERANKER = "learned reranker"

__all__ = [
    "CORRECTOR",
    "NO_CANDIDATES",
    "RERANKER",
    "EvalAtSteps",
    "build_lineage",
    "corrector_scores",
    "evaluate_run",
    "generate_sharded",
    "learning_curve_callbacks",
    "model_card",
    "model_outputs",
    "model_row_name",
    "results_markdown",
    "training_summary",
]


def generate_sharded(model: Any, tokenizer: Any, inputs: Sequence[str], **gen_kwargs: Any) -> list[str]:
    """Decode ``inputs`` with every rank taking an equal share; every rank gets all outputs, in input order.

    Args:
        model: the corrector (the same on every rank, or sharded across them).
        tokenizer: its tokenizer.
        inputs: the corrector inputs; every rank passes the same list.
        **gen_kwargs: :func:`toolkit.models.students.generate` settings.
    """

    def decode(share: list[str]) -> list[str]:
        return generate(model, tokenizer, share, **gen_kwargs)

    return map_sharded(decode, inputs)


def corrector_scores(
    config: LMCorConfig, rows: Sequence[Mapping], predictions: Sequence[str]
) -> tuple[dict[str, float], dict[str, str]]:
    """``(scores, signatures)`` of one output per row, with the run's hypothesis tokenisation."""
    sources = [row["source"] for row in rows]
    refs = [row["references"] for row in rows]
    return score_outputs(config.task_type, sources, predictions, refs, tokenize=config.hyp_tokenize)


def model_row_name(config: LMCorConfig) -> str:
    """The results-table name of the trained model's row: corrector, learned reranker or no-candidates model."""
    if config.no_candidates:
        return NO_CANDIDATES
    return RERANKER if config.mode == "reranker" else CORRECTOR


def model_outputs(
    config: LMCorConfig, candidates: Sequence[Sequence[str]], generated: Sequence[str]
) -> tuple[list[str], dict[str, Any] | None]:
    """``(outputs, reranking)``: the generations as they are, or the learned reranker's mapped onto candidates.

    ``reranking`` is :func:`~toolkit.methods.lmcor.reranker.map_to_candidates`'s summary (how many generations
    were not exactly a candidate), ``None`` outside reranker mode.
    """
    if config.mode != "reranker":
        return list(generated), None
    return map_to_candidates(generated, candidates)


def evaluate_run(
    config: LMCorConfig,
    rows: list[dict],
    inputs: list[str],
    predictions: list[str],
    *,
    dev_rows: Sequence[Mapping] = (),
) -> dict[str, Any]:
    """Score the corrector and every baseline on the same test rows; build the results table.

    The best single system (held-out-system runs) is chosen on ``dev_rows`` and their references, then reported on
    the test rows; without dev rows that row is left out. Every hypothesis gets the same preprocessing
    (``config.eval_tokenize``); oracle rows are >= every selector row on their own metric. ``predictions`` are the
    model's generations; in reranker mode each is mapped onto one of its row's candidates first
    (:func:`model_outputs`; the raw generation stays in the prediction records as ``generated``).
    """
    systems = config.test_systems or None
    tokenize = config.hyp_tokenize
    best_name, per_system_dev, single = None, {}, {}
    if systems and dev_rows:
        best_name, per_system_dev, best_out = best_single_system(
            dev_rows, rows, task=config.task_type, systems=systems, tokenize=tokenize
        )
        single = {f"best single system ({best_name}, chosen on dev)": best_out}
    elif systems:
        logger.warning("No dev rows: the best-single-system row is left out (it must not be chosen on test rows)")
    baselines = baseline_outputs(
        rows,
        task=config.task_type,
        k=config.candidates_read,
        systems=systems,
        seed=config.baseline_seed,
        tokenize=tokenize,
        extra_starts=single,
    )
    oracles = [oracle_label(metric) for metric in config.metrics]
    # Table order: selectors, each test system, the best single system, the oracles, the model.
    outputs = {name: out for name, out in baselines.items() if name not in oracles}
    # every system's own output, so a comparison table can set the model against each of them, not only the one
    # chosen on dev
    outputs.update({f"system {name}": system_outputs(rows, name) for name in systems or []})
    outputs.update(single)
    outputs.update({name: baselines[name] for name in oracles})
    model_row = model_row_name(config)
    candidates = eval_candidates(rows, config)
    outputs[model_row], reranking = model_outputs(config, candidates, predictions)
    scores, signatures = {}, {}
    for name, hyps in outputs.items():
        scores[name], row_signatures = corrector_scores(config, rows, hyps)
        signatures.update(row_signatures)
    records = prediction_records(rows, inputs, outputs, model_row, candidates)
    if reranking is not None:
        for record, generated in zip(records, predictions):
            record["generated"] = generated
    return {
        "task": config.task,
        "task_type": config.task_type,
        "mode": config.mode,
        "scores": scores,
        "corrector": scores[model_row],
        "model_row": model_row,
        **({"reranker": reranking} if reranking is not None else {}),
        "per_system_dev": per_system_dev,
        "best_single_system": best_name,
        "signatures": signatures,
        "table": [{"method": name, **{m: scores[name][m] for m in config.metrics}} for name in outputs],
        "columns": ["method", *config.metrics],
        "predictions": records,
    }


def prediction_records(
    rows: Sequence[Mapping],
    inputs: Sequence[str],
    outputs: Mapping[str, Sequence[str]],
    model_row: str,
    candidates: Sequence[Sequence[str]],
) -> list[dict[str, Any]]:
    """One record per test row: its input, the model's prediction, the references, the candidates and every
    baseline's output.

    ``candidates`` are the row's test candidates as the model read them (uncut), so the share of predictions
    identical to a candidate (the copy rate of :mod:`experiments.metrics`) is exact.
    """
    records = []
    for index, (row, text) in enumerate(zip(rows, inputs)):
        record = {"id": row.get("id"), "input": text, "prediction": outputs[model_row][index]}
        record["references"] = row["references"]
        record["candidates"] = list(candidates[index])
        record.update({f"baseline:{name}": out[index] for name, out in outputs.items() if name != model_row})
        records.append(record)
    return records


class EvalAtSteps(TrainerCallback):
    """Decodes and scores the test rows at the given global steps; the learning curve is in ``history``.

    Every rank decodes its share (:func:`generate_sharded`); the main process scores and keeps the curve.
    """

    def __init__(
        self,
        steps: Sequence[int],
        tokenizer: Any,
        rows: Sequence[Mapping],
        inputs: Sequence[str],
        config: LMCorConfig,
        gen_kwargs: Mapping[str, Any],
    ):
        self.steps = set(steps)
        self.history: list[dict[str, Any]] = []
        self.tokenizer = tokenizer
        self.rows = rows
        self.inputs = inputs
        self.config = config
        self.gen_kwargs = dict(gen_kwargs)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step not in self.steps:
            return
        generated = generate_sharded(model, self.tokenizer, self.inputs, **self.gen_kwargs)
        if is_main_process():
            predictions, _ = model_outputs(self.config, eval_candidates(self.rows, self.config), generated)
            scores, _ = corrector_scores(self.config, self.rows, predictions)
            self.history.append({"step": state.global_step, **scores})
            logger.info("step %d corrector: %s", state.global_step, scores)


def learning_curve_callbacks(
    steps: Sequence[int],
    config: LMCorConfig,
    tokenizer: Any,
    rows: Sequence[Mapping],
    inputs: Sequence[str],
    gen_kwargs: Mapping[str, Any],
) -> list[EvalAtSteps]:
    """``[EvalAtSteps]`` at ``steps``, or ``[]`` when none are asked for."""
    return [EvalAtSteps(steps, tokenizer, rows, inputs, config, gen_kwargs)] if steps else []


def build_lineage(config: LMCorConfig, splits: Mapping[str, list[dict]], *, base_model: str) -> Lineage:
    """The card's lineage: who made the candidates, and every teacher request (and its cost) the run used.

    Teacher calls and cost sum over the train, dev *and* test candidates (all were paid for); the dataset
    fingerprint stays that of the training rows.
    """
    train_rows = splits["train"]
    if config.task in WMT22_POOLS:
        systems = config.train_systems or sorted({name for row in train_rows for name in row.get("systems", [])})
        pair = WMT22_POOLS[config.task]
        return Lineage(
            teacher_id=f"WMT22 {pair} system outputs: " + ", ".join(systems),
            generated_dataset=f"wmt22_general ({pair} system-outputs)",
            base_model=base_model,
            extra={"test_systems (unseen)": ", ".join(config.test_systems)} if config.test_systems else {},
        )
    per_split = {name: Lineage.from_generated(rows) for name, rows in splits.items()}
    lineage = Lineage.from_generated(
        [row for rows in splits.values() for row in rows],
        generated_dataset=config.pool_path or config.task,
        base_model=base_model,
    )
    lineage.dataset_fingerprint = per_split["train"].dataset_fingerprint
    if lineage.num_teacher_calls:
        calls = {name: part.num_teacher_calls or 0 for name, part in per_split.items()}
        lineage.extra["teacher calls by split"] = ", ".join(f"{name} {count}" for name, count in calls.items())
    return lineage


def training_summary(
    train_metrics: Mapping, examples: Mapping, tokens_seen: int | None, train_s: float, *, world_size: int
) -> dict[str, Any]:
    """The run's ``training`` block: trainer metrics, example counts, cut inputs, non-padding tokens per second."""
    tokens = int(tokens_seen or 0)
    return {
        **train_metrics,
        "train_examples": len(examples["train"]),
        "dev_examples": len(examples["dev"]),
        "test_rows": len(examples["test"]),
        "inputs_cut_to_max_source_len": examples["inputs_cut"],
        "tokens_seen_non_padding": tokens,
        "world_size": world_size,
        # Non-padding tokens per second per process; with DDP, multiply by world size for the total.
        "train_tokens_per_s": tokens / train_s if train_s else None,
    }


def results_markdown(results: Mapping[str, Any]) -> str:
    """The results table (every method on the same test rows) and the row count."""
    table = markdown_table(results["table"], columns=results["columns"])
    text = f"{table}\n{results['training']['test_rows']} test rows (the same rows for every method).\n"
    reranking = results.get("reranker")
    if reranking:
        text += (
            f"{RERANKER}: {reranking['mapped_by_chrf']} / {reranking['rows']} generations were not exactly a "
            "candidate and were mapped to the candidate with the highest sentence chrF.\n"
        )
    return text


def model_card(
    config: LMCorConfig,
    results: Mapping,
    splits: Mapping[str, list[dict]],
    *,
    base_model: str,
    adapter: bool,
    model_name: str,
    description: str,
) -> Card:
    """The corrector's card: lineage (who made the candidates, every teacher call), signatures, input format.

    Args:
        config: the run's method settings.
        results: :func:`evaluate_run`'s results.
        splits: the run's rows (their teacher usage goes into the lineage).
        base_model: the student the corrector was trained from.
        adapter: the saved model is a PEFT adapter (LoRA / QLoRA), not full weights.
        model_name: the name the card gives the model.
        description: one paragraph on what the model is.
    """
    signatures = "\n".join(f"- {name}: `{sig}`" for name, sig in results["signatures"].items()) or "n/a"
    sep = config.separator
    input_format = (
        f"`{config.source_prefix}<input>{sep}{config.candidates_prefix}<c1>{sep}<c2> ...` "
        f"with k={config.k} candidates."
    )
    if config.mode == "reranker":
        input_format += " Learned reranker: trained to output the candidate closest to the reference (sentence chrF)."
    return Card(
        base_model=base_model,
        task=config.task_type,
        recipe="lmcor",
        description=description,
        model_name=model_name,
        datasets=[config.task],
        lineage=build_lineage(config, splits, base_model=base_model),
        library_name="peft" if adapter else "transformers",
        extra_sections={"sacrebleu signatures": signatures, "Input format": input_format},
    )
