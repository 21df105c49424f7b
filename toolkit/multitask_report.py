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

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COMPUTE_COLUMNS", "compute_of", "compute_totals", "headline_row", "render_results", "validity_rows"]

COMPUTE_KEYS = ("train_steps", "train_tokens", "train_cpu_seconds", "train_seconds")
COMPUTE_COLUMNS = {"train_steps": "train steps", "train_tokens": "train tokens", "train_cpu_seconds": "train CPU-s"}
COMPUTE_COLUMNS["train_seconds"] = "train s"
COMPUTE_COLUMNS["train_peak_rss_mb"] = "peak RSS MB"
COMPUTE_COLUMNS["model_memory_mb"] = "model MB"
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
    from toolkit.reporting import markdown_table

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
