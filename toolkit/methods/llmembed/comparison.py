"""Method comparison tables (quality + cost) in which every row is scored on the same test rows.

Methods may score different numbers of test rows: prompting a causal LM is slow, so the few-shot baseline is
often run on a prefix of the (seeded, shuffled) test split while the embedding heads score all of it. Putting
an accuracy over 60 rows next to one over 500 compares different test sets. :func:`build_tables` therefore
returns

* ``all``: the methods that scored every test row, scored on every row; and, when some method scored fewer,
* ``subset``: *every* method scored on the rows all of them have (the first ``n`` rows), so the prompted
  baseline is compared with the others on exactly its rows.

Costs: total seconds / energy depend on how many rows were scored, so the subset table keeps only per-example
inference costs (each method's measured rate) and training cost, never totals over different row counts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Value

from toolkit.baselines.encoder import finetune_sequence_classifier
from toolkit.baselines.few_shot import few_shot_baseline
from toolkit.evaluation.label_scoring import label_scores
from toolkit.evaluation.metrics import accuracy
from toolkit.meter import DEFAULT_WATTS_PER_CORE, Cost, Meter
from toolkit.methods.llmembed.embeddings import cost_over_ranks
from toolkit.publishing import reporting
from toolkit.publishing.reporting import markdown_table

ALL_COLUMNS = [
    "method",
    "n_train",
    "n_test",
    "accuracy",
    "macro_f1",
    "invalid",
    "extract_cpu_s",
    "head_cpu_s",
    "train_cpu_s",
    "infer_cpu_s_per_1k",
    "train_s",
    "infer_s",
    "infer_ms_per_ex",
    "infer_cpu_ms_per_ex",
    "cpu_s",
    "energy_wh",
    "trainable_params",
    "inference_params",
    "features_cached",
]
#: The quality columns of a row: what a multi-process run must reproduce (the cost columns are measurements).
QUALITY_COLUMNS = ("method", "n_train", "n_test", "accuracy", "macro_f1", "invalid")
# Totals over the rows a method scored: not comparable on a subset, so dropped there.
_TOTALS = ("infer_s", "cpu_s", "energy_wh")
SUBSET_COLUMNS = [c for c in ALL_COLUMNS if c not in _TOTALS]


@dataclass
class MethodResult:
    """One method's test predictions and costs.

    Attributes:
        method: Row name.
        pred_ids: Predicted label ids for the first ``len(pred_ids)`` test rows (``-1`` = invalid output).
        train_cost: Cost of training (feature extraction included).
        extract_cost: The feature-extraction part of ``train_cost`` (train + validation rows; zero for methods
            that train end to end).
        infer_cost: Cost of predicting the ``len(pred_ids)`` rows.
        n_train: Training examples (demonstrations for a prompted method).
        trainable_params: Parameters trained.
        inference_params: Parameters used at inference.
        extra: More columns (e.g. ``best_epoch``, ``features_cached``).
    """

    method: str
    pred_ids: list[int]
    train_cost: Cost
    infer_cost: Cost
    n_train: int
    trainable_params: int | None = None
    inference_params: int | None = None
    extract_cost: Cost = field(default_factory=Cost)
    extra: dict = field(default_factory=dict)


def score_row(
    result: MethodResult, gold_ids: Sequence[int], names: Sequence[str], watts_per_core: float = DEFAULT_WATTS_PER_CORE
) -> dict:
    """Quality + cost of ``result`` on the first ``len(gold_ids)`` test rows. Invalid predictions count as wrong.

    When fewer rows than ``result`` predicted are scored, the inference cost is charged pro rata, so the
    per-example columns keep the measured rate.
    """
    n_rows = len(gold_ids)
    if len(result.pred_ids) < n_rows:
        raise ValueError(f"{result.method} predicted {len(result.pred_ids)} rows, cannot score {n_rows}")
    pred_ids = result.pred_ids[:n_rows]
    preds = [names[p] if p >= 0 else "<invalid>" for p in pred_ids]
    golds = [names[g] for g in gold_ids]
    share = n_rows / max(len(result.pred_ids), 1)
    infer = Cost(result.infer_cost.wall_s * share, result.infer_cost.cpu_s * share)
    total = result.train_cost + infer
    per_row = 1 / max(n_rows, 1)
    # One macro-F1 for every recipe: over the training label set, invalid answers count as wrong.
    scores = label_scores([p if p >= 0 else None for p in pred_ids], list(gold_ids), range(len(names)))
    return {
        "method": result.method,
        "n_train": result.n_train,
        "n_test": n_rows,
        "accuracy": accuracy(preds, golds),
        "macro_f1": scores["macro_f1"],
        "invalid": sum(p < 0 for p in pred_ids),
        "extract_cpu_s": result.extract_cost.cpu_s,
        "head_cpu_s": result.train_cost.cpu_s - result.extract_cost.cpu_s,
        "train_cpu_s": result.train_cost.cpu_s,
        "infer_cpu_s_per_1k": 1000 * infer.cpu_s * per_row,
        "train_s": result.train_cost.wall_s,
        "infer_s": infer.wall_s,
        "infer_ms_per_ex": 1000 * infer.wall_s * per_row,
        "infer_cpu_ms_per_ex": 1000 * infer.cpu_s * per_row,
        "cpu_s": total.cpu_s,
        "energy_wh": total.energy_wh(watts_per_core),
        "trainable_params": result.trainable_params,
        "inference_params": result.inference_params,
        **result.extra,
    }


def build_tables(
    results: Sequence[MethodResult],
    gold_ids: Sequence[int],
    names: Sequence[str],
    watts_per_core: float = DEFAULT_WATTS_PER_CORE,
) -> dict[str, dict]:
    """Tables whose rows are each scored on one common set of test rows.

    Returns:
        ``{"all": {"n_rows", "title", "columns", "rows"}}`` with the methods that scored all
        ``len(gold_ids)`` rows, plus ``"subset"`` (same keys, every method on the first ``n`` rows, ``n`` the
        fewest any method scored) when some method scored fewer. A table with no method is left out.
    """
    n_all = len(gold_ids)
    for result in results:
        if len(result.pred_ids) > n_all:
            raise ValueError(f"{result.method} has {len(result.pred_ids)} predictions for {n_all} test rows")
    tables = {}
    full = [r for r in results if len(r.pred_ids) == n_all]
    if full:
        tables["all"] = {
            "n_rows": n_all,
            "title": f"All {n_all} test rows",
            "columns": ALL_COLUMNS,
            "rows": [score_row(r, gold_ids, names, watts_per_core) for r in full],
        }
    n_sub = min((len(r.pred_ids) for r in results), default=n_all)
    if n_sub < n_all:
        rows = []
        for result in results:
            row = score_row(result, gold_ids[:n_sub], names, watts_per_core)
            rows.append({k: v for k, v in row.items() if k not in _TOTALS})
        partial = ", ".join(r.method for r in results if len(r.pred_ids) < n_all)
        tables["subset"] = {
            "n_rows": n_sub,
            "title": (
                f"Prompting subset: every method on the first {n_sub} of the {n_all} test rows "
                f"({partial} scored only these; per-example costs)"
            ),
            "columns": SUBSET_COLUMNS,
            "rows": rows,
        }
    return tables


def render_tables(tables: dict[str, dict], preamble: str = "", floatfmt: str = ".4g") -> str:
    """Markdown: an optional preamble, then each table under a heading that says which rows it scores."""
    parts = [preamble.strip()] if preamble.strip() else []
    for table in tables.values():
        parts.append(f"### {table['title']}\n\n" + markdown_table(table["rows"], table["columns"], floatfmt=floatfmt))
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def splits_preamble(where: dict[str, str], sizes: dict[str, int]) -> str:
    """One sentence naming each split's size and source, for the top of the results."""
    parts = [f"{name} {sizes[size]} rows ({where[key]})" for name, size, key in _SPLITS]
    return "Splits (seeded samples): " + "; ".join(parts) + ". Every row of a table is scored on the same test rows."


_SPLITS = (("train", "train", "train"), ("validation", "val", "dev"), ("test", "test", "test"))


def prediction_rows(texts: Sequence[str], golds: Sequence[str], predictions: dict[str, list]) -> list[dict]:
    """``{"text", "gold", method: prediction ...}`` per test row; a method scored on a prefix is left out after it."""
    return [
        {"text": t, "gold": g, **{k: v[i] for k, v in predictions.items() if i < len(v)}}
        for i, (t, g) in enumerate(zip(texts, golds))
    ]


def plot_comparison(tables: dict[str, dict], out: str | os.PathLike) -> None:
    """Accuracy against energy (all-rows table) and against inference CPU per example (common rows).

    Energy totals only compare on one row count (the all-rows table); per-example CPU compares every method on
    the rows they all scored.
    """
    out = Path(out)
    everything = tables.get("all", {})
    reporting.plot_xy(
        everything.get("rows", []),
        "energy_wh",
        "accuracy",
        "method",
        out / "accuracy_vs_energy.png",
        title=f"accuracy vs energy: all {everything.get('n_rows', 0)} test rows",
    )
    common = tables.get("subset", tables.get("all"))
    reporting.plot_xy(
        common["rows"],
        "infer_cpu_ms_per_ex",
        "accuracy",
        "method",
        out / "accuracy_vs_inference_cpu.png",
        title=f"accuracy vs inference CPU ms/ex: {common['n_rows']} test rows",
    )


def head_result(method: str, fit: dict, sources: Sequence[str], costs: dict, params: dict, n_train: int):
    """The :class:`MethodResult` of a head trained on cached features (``toolkit.methods.llmembed.head.fit_variant``).

    It is charged the extraction of every feature source it reads (``costs[source]``: ``{"train", "test",
    "cached"}``, see ``toolkit.methods.llmembed.feature_cache.extraction_cost``) on top of its own training /
    inference, and its inference parameters include those backbones (``params[source]``).
    """
    extract = sum((costs[s]["train"] for s in sources), Cost())
    infer = fit["infer_cost"] + sum((costs[s]["test"] for s in sources), Cost())
    n_head = sum(p.numel() for p in fit["head"].parameters())
    extra = {"best_epoch": fit["fit"]["best_epoch"], "features_cached": all(costs[s]["cached"] for s in sources)}
    return MethodResult(
        method=method,
        pred_ids=fit["predictions"],
        train_cost=fit["train_cost"] + extract,
        infer_cost=infer,
        n_train=n_train,
        trainable_params=n_head,
        inference_params=n_head + sum(params[s] or 0 for s in sources),
        extract_cost=extract,
        extra=extra,
    )


def finetuned_encoder_result(
    model: str, train: tuple, test: tuple, names: Sequence[str], n_params: int | None, **finetune_kwargs
) -> tuple[MethodResult, list[str]]:
    """Fine-tune ``model`` end to end on ``train`` (``(texts, label ids)``) and predict ``test``, with its costs.

    No validation split: the fixed budget needs no model selection, and it keeps CPU honest. CPU time is
    measured for the whole call and split between training and inference by their wall-time shares. Under a
    multi-process launch every rank must call it: the ``Trainer`` trains data-parallel, and the costs are summed
    over the ranks (``toolkit.methods.llmembed.embeddings.cost_over_ranks``).

    Returns:
        ``(result, predicted label names, the fine-tuning's own results (see ``finetune_sequence_classifier``))``.
    """
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(names))})
    train_set = Dataset.from_dict({"text": train[0], "label": train[1]}, features=features)
    test_set = Dataset.from_dict({"text": test[0], "label": test[1]}, features=features)
    with Meter() as meter:
        finetuned = finetune_sequence_classifier(model, train_set, None, test_set, **finetune_kwargs)
    total = cost_over_ranks(meter.cost.wall_s, meter.cost.cpu_s)
    train_s, infer_s = finetuned["train_seconds"], finetuned["infer_seconds"]
    share = train_s / max(train_s + infer_s, 1e-9)
    ids = [list(names).index(p) for p in finetuned["predictions"]]
    result = MethodResult(
        method="finetuned_encoder",
        pred_ids=ids,
        train_cost=Cost(train_s, total.cpu_s * share),
        infer_cost=Cost(infer_s, total.cpu_s * (1 - share)),
        n_train=len(train[0]),
        trainable_params=n_params,
        inference_params=n_params,
    )
    return result, finetuned["predictions"], finetuned


def few_shot_result(model: str, train: tuple, test: tuple, names: Sequence[str], n_params: int | None, **kwargs):
    """The same LLM prompted few-shot (:func:`toolkit.baselines.few_shot.few_shot_baseline`), with its costs.

    Under a multi-process launch every rank must call it: the prompts are sharded across the ranks, and the cost is
    summed over them.

    Returns:
        ``(result, predicted label names with "<invalid>" for none, raw outputs)``.
    """
    preds, raw, n_demos, cost = few_shot_baseline(
        model, train[0], [names[y] for y in train[1]], test[0], names, **kwargs
    )
    ids = [names.index(p) if p is not None else -1 for p in preds]
    infer_cost = cost_over_ranks(cost.wall_s, cost.cpu_s)
    result = MethodResult("few_shot_prompt", ids, Cost(), infer_cost, n_demos, 0, n_params)
    return result, [p if p is not None else "<invalid>" for p in preds], raw
