"""Results tables of the multi-task recipe: one row per model, headline metrics, answer validity and compute.

Every row carries the same columns so the models line up:

- per task, the **strict** accuracy (headline: an answer that is not a label is wrong), then the **snapped** accuracy
  as a separately labelled column, macro-F1 (over the train label set), slot F1 and joint exact match;
- what the row cost to train: optimizer steps, tokens trained, CPU-seconds and wall seconds, summed over the models
  behind the row (two for an intent model + slot model pair, one per task for the encoder);
- a compute summary puts every approach next to the multi-task model (``CPU-s ×``), so a baseline that won with 2-3×
  the compute is visible as such.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolkit.evaluation.label_scoring import averaging_labels
from toolkit.publishing.reporting import markdown_table, plot_confusion_matrix

__all__ = [
    "BUDGET_NOTES",
    "COMPUTE_COLUMNS",
    "Tables",
    "plot_confusions",
    "compute_of",
    "compute_totals",
    "headline_row",
    "render_results",
    "validity_rows",
]

BUDGET_NOTES = {
    "per_model": "baseline_budget=per_model: every baseline model trains the multi-task model's full step budget",
    "split_by_mixture": "baseline_budget=split_by_mixture: each family of baseline models shares the multi-task "
    "model's total steps by its task mixture",
    "split_evenly": "baseline_budget=split_evenly: each family of baseline models shares the multi-task model's "
    "total steps evenly",
    "match_task_rows": "baseline_budget=match_task_rows: each baseline model trains exactly the rows of its task "
    "the multi-task model drew, as often (equal per-task rows)",
}

COMPUTE_KEYS = ("train_steps", "train_tokens", "train_cpu_seconds", "train_seconds")
COMPUTE_COLUMNS = {
    "train_steps": "train steps",
    "train_tokens": "train tokens",
    "train_cpu_seconds": "train CPU-s",
    "train_seconds": "train s",
    "train_peak_rss_mb": "peak RSS MB",
    "model_memory_mb": "model MB",
}
# Summed over a family of models, except memory, which is the largest of theirs.
_MAX_KEYS = ("train_peak_rss_mb", "model_memory_mb")
# (metric key, column suffix) in table order; label fields are prefixed by "intent " for intent tasks.
_LABEL_METRICS = (("accuracy", "acc"), ("accuracy_snapped", "acc (snapped)"))


def compute_of(*infos: Mapping[str, Any]) -> dict[str, float]:
    """Sum the compute keys (steps, tokens, CPU-s, wall s) of one or more trained models; the peak RSS is a max."""
    out = {key: sum(info.get(key) or 0 for info in infos) for key in COMPUTE_KEYS}
    for key in _MAX_KEYS:
        values = [info[key] for info in infos if info.get(key) is not None]
        if values:
            out[key] = max(values)
    return out


def headline_row(model: str, results: Mapping[str, Mapping[str, Any]], compute: Mapping[str, Any]) -> dict:
    """One model's row: ``"<source> <metric>"`` columns per task, then its compute columns."""
    row: dict[str, Any] = {"model": model}
    for task, m in results.items():
        source = task.rsplit(":", 1)[0]
        field = "topic" if "topic_accuracy" in m else "intent" if "intent_accuracy" in m else None
        prefix = "" if field in (None, "topic") else "intent "
        if field:
            for key, label in _LABEL_METRICS:
                row[f"{source} {prefix}{label}"] = m.get(f"{field}_{key}")
            row[f"{source} {prefix}macro-F1"] = m.get("macro_f1")
        if "slot_f1" in m:
            row[f"{source} slot F1"] = m["slot_f1"]
        if "exact_match" in m:
            row[f"{source} EM"] = m["exact_match"]
    for key, label in COMPUTE_COLUMNS.items():
        row[label] = compute.get(key)
    return row


def validity_rows(model: str, results: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """Per-task answer validity: strict vs snapped accuracy, invalid answers, unplaceable slot values."""
    rows = []
    for task, m in results.items():
        field = "topic" if "topic_accuracy" in m else "intent" if "intent_accuracy" in m else None
        rows.append(
            {
                "model": model,
                "task": task,
                "acc (strict)": m.get(f"{field}_accuracy") if field else None,
                "acc (snapped)": m.get(f"{field}_accuracy_snapped") if field else None,
                "invalid labels": m.get(f"{field}_invalid") if field else None,
                "slot values not found": m.get("slots_not_found"),
                "malformed slot items": m.get("slots_malformed"),
                "n": m.get("n"),
            }
        )
    return rows


def compute_totals(rows: Sequence[Mapping[str, Any]], reference: str) -> list[dict]:
    """Compute summary: each approach's totals and its CPU-seconds relative to the ``reference`` approach.

    Args:
        rows: ``{"approach", "models", <COMPUTE_KEYS>...}`` per approach (e.g. multi-task, all single-task LoRA models
            together, the encoders).
        reference: The approach the ratios divide by (the multi-task model).
    """
    ref = next((r for r in rows if r["approach"] == reference), None)
    base = (ref or {}).get("train_cpu_seconds") or 0
    out = []
    for r in rows:
        line = {"approach": r["approach"], "models": r["models"]}
        line |= {label: r.get(key) for key, label in COMPUTE_COLUMNS.items()}
        line["CPU-s × multi-task"] = r.get("train_cpu_seconds", 0) / base if base else None
        out.append(line)
    return out


def render_results(
    table: Sequence[Mapping[str, Any]],
    totals: Sequence[Mapping[str, Any]],
    validity: Sequence[Mapping[str, Any]],
    scored: Mapping[str, str],
    budget_note: str,
) -> str:
    """The ``results.md`` text: headline table, compute summary, answer validity and which rows were scored."""
    columns: list[str] = []
    for row in table:
        columns += [c for c in row if c not in columns and c not in COMPUTE_COLUMNS.values()]
    columns += list(COMPUTE_COLUMNS.values())
    lines = [
        markdown_table(table, columns, floatfmt=".4f"),
        "acc = strict accuracy (an answer that is not a label after whitespace/case normalisation is wrong); "
        "acc (snapped) maps such answers to the closest label first. macro-F1 is strict, over the label set of the "
        "training split, the same definition for the LLMs and the encoder. Encoder tokens are its own word pieces.\n",
        f"Compute ({budget_note}):\n",
        markdown_table(totals, floatfmt=".2f"),
        "Answer validity (strict = out-of-label-set answers count as wrong; snapped = mapped to the closest label):\n",
        markdown_table(validity, floatfmt=".4f"),
        "Rows scored:\n",
        "\n".join(f"- `{task}`: {where}" for task, where in scored.items()) + "\n",
    ]
    return "\n".join(lines)


@dataclass
class Tables:
    """The run's tables as they fill up: one headline row per model family, compute per approach, validity."""

    table: list[dict] = field(default_factory=list)
    totals: list[dict] = field(default_factory=list)
    validity: list[dict] = field(default_factory=list)

    def add_model(self, key: str, label: str, results: Mapping[str, Any], *infos: Mapping, approach: str = "") -> None:
        """One model's headline row and validity rows (and its compute total when ``approach`` names it)."""
        self.table.append(headline_row(label, results, compute_of(*infos)))
        self.validity += validity_rows(key, results)
        if approach:
            self.add_total(approach, len(infos), compute_of(*infos))

    def add_total(self, approach: str, models: int, compute: Mapping[str, Any]) -> None:
        """One approach's compute total (``models`` models together)."""
        self.totals.append({"approach": approach, "models": models} | dict(compute))

    def extend(self, other: Tables) -> None:
        """Append ``other``'s rows after this one's (e.g. the baselines' after the multi-task model's)."""
        self.table += other.table
        self.totals += other.totals
        self.validity += other.validity

    def finish(self, summary: dict, scored: Mapping[str, str], budget_mode: str) -> str:
        """Store ``compute`` / ``table`` / ``validity`` in ``summary`` (results drivers merge them across runs) and
        return the ``results.md`` text."""
        summary["compute"] = compute_totals(self.totals, "multi-task")
        summary["table"] = self.table
        summary["validity"] = self.validity
        return render_results(self.table, summary["compute"], self.validity, scored, BUDGET_NOTES[budget_mode])


def plot_confusions(out_dir: str, splits: Sequence[Any], predictions: Sequence[Mapping], model: str = "multitask"):
    """``confusion_<task>.png`` of ``model`` per label task; strict labels: invalid answers land in "other"."""
    for sp in (sp for sp in splits if sp.task != "slots"):
        rows = [r for r in predictions if r["model"] == model and r["task"] == sp.name]
        golds = [r["gold"] for r in rows]
        path = os.path.join(out_dir, f"confusion_{sp.name.replace(':', '_')}.png")
        plot_confusion_matrix(golds, [r["label"] for r in rows], averaging_labels(sp.labels, golds), path)
