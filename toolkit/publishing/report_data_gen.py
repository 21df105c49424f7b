"""The data-gen job page of :mod:`toolkit.publishing.report_html`: counts, parse rate, failures, cost, tokens, sample rows.

Sample rows show a row's input columns, then every candidate (greedy / sampled, word-diffed against a ``source``
column when the row has one) or the rationale, parsed teacher label, gold label and raw completion side by side.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit.configs import is_secret_key
from toolkit.publishing.lineage import Lineage
from toolkit.publishing.report_html import (
    REPORT_NAME,
    cell_text,
    command_text,
    config_text,
    lineage_stages,
    render,
    word_diff_html,
)

__all__ = ["write_data_gen_report"]

# Columns a data-gen job adds; everything else in a row is the job's input.
_GENERATED = (
    "candidates",
    "candidate_kinds",
    "sample_indices",
    "finish_reasons",
    "rationale",
    "teacher_label",
    "parse_ok",
    "teacher_completion",
)
_LINEAGE_COLUMNS = ("teacher_id", "template_hash", "sampling", "usage", "sample_index", "row_index")
_HEADLINE = (
    "items",
    "completed",
    "failed",
    "pending",
    "rows_written",
    "parse_rate",
    "parse_failures",
    "cost_usd",
    "estimated_cost_usd",
    "prompt_tokens",
    "completion_tokens",
    "requests_sent",
    "cached_samples",
    "new_samples",
    "elapsed_s",
    "stopped_reason",
)


def _gen_sample(row: Mapping, label_column: str | None) -> dict:
    inputs = [(k, cell_text(v)) for k, v in row.items() if k not in _GENERATED + _LINEAGE_COLUMNS]
    source = row.get("source") if isinstance(row.get("source"), str) else None
    outputs = []
    kinds, finish = row.get("candidate_kinds") or [], row.get("finish_reasons") or []
    for position, cand in enumerate(row.get("candidates") or []):
        name = f"#{position + 1} {kinds[position] if position < len(kinds) else 'candidate'}"
        reason = finish[position] if position < len(finish) else None
        if reason not in (None, "stop"):  # "length": cut at max_tokens, worth seeing
            name += f" ({reason})"
        out = {"name": name, "text": cell_text(cand), "kind": "candidate"}
        if source is not None:
            out["html"] = word_diff_html(source, out["text"])
        outputs.append(out)
    if "rationale" in row or "teacher_completion" in row:
        gold = row.get(label_column) if label_column else None
        verdict = "parsed" if row.get("parse_ok") else "parse failure"
        outputs.append({"name": "rationale", "text": cell_text(row.get("rationale")), "kind": "rationale"})
        outputs.append(
            {
                "name": f"teacher label ({verdict})",
                "text": cell_text(row.get("teacher_label")),
                "kind": "student" if row.get("parse_ok") else "failure",
            }
        )
        if gold is not None:
            outputs.append({"name": f"gold {label_column}", "text": cell_text(gold), "kind": "ref"})
        outputs.append({"name": "raw completion", "text": cell_text(row.get("teacher_completion")), "kind": "raw"})
    return {
        "id": cell_text(row.get("id")) if "id" in row else None,
        "inputs": inputs,
        "columns": outputs,
        "usage": _usage_text(row.get("usage")),
    }


def _usage_text(usage: Any) -> str | None:
    """``"64 prompt + 12 completion tokens, $0.0001"`` from a row's ``usage`` JSON (None when absent)."""
    try:
        usage = json.loads(usage) if isinstance(usage, str) else usage
    except ValueError:
        return None
    if not isinstance(usage, Mapping) or "prompt_tokens" not in usage:
        return None
    text = f"{usage['prompt_tokens']} prompt + {usage.get('completion_tokens', 0)} completion tokens"
    return text + (f", ${usage['cost_usd']:.4g}" if isinstance(usage.get("cost_usd"), (int, float)) else "")


def write_data_gen_report(
    out_dir: str | os.PathLike,
    *,
    title: str,
    summary: Mapping,
    rows: Sequence[Mapping],
    failures: Sequence[Mapping] = (),
    lineage: Any = None,
    config: Mapping | None = None,
    command: str | Sequence[str] | None = None,
    max_samples: int = 50,
    max_failures: int = 100,
    label_column: str | None = "label",
    name: str = REPORT_NAME,
) -> Path:
    """Write a data-gen job's ``report.html``: counts, parse rate, failures, cost, tokens and sample rows.

    Args:
        out_dir: The job's output folder.
        title: Page title.
        summary: The job's ``summary.json`` dict (``toolkit.generation`` counts plus job statistics).
        rows: Generated rows (the first ``max_samples`` are shown, candidates / rationales side by side).
        failures: ``failures.jsonl`` rows (the first ``max_failures`` are listed).
        lineage: ``toolkit.publishing.lineage.Lineage`` or dict; default collected from ``rows``.
        config: The job's configs (redacted before rendering).
        command: Command line; default ``sys.argv``.
        label_column: Gold label column shown next to a rationale's teacher label.
        name: File name of the page.
    """
    if lineage is None and rows:
        lineage = Lineage.from_generated(list(rows), generated_dataset=str(out_dir))
    scalars = {k: v for k, v in summary.items() if not isinstance(v, (dict, list)) and not is_secret_key(k)}
    headline = [(k, cell_text(scalars.pop(k))) for k in _HEADLINE if k in scalars]
    n_items = summary.get("items") or (len(rows) + len(failures))
    parse_rate = summary.get("parse_rate")
    return render(
        "data_gen_report.html.j2",
        Path(out_dir) / name,
        title=title,
        headline=headline,
        other_stats=[(k, cell_text(v)) for k, v in sorted(scalars.items())],
        parse_rate=f"{100 * parse_rate:.1f}%" if isinstance(parse_rate, (int, float)) else None,
        completion_rate=f"{100 * summary.get('completed', len(rows)) / n_items:.1f}%" if n_items else None,
        n_rows=len(rows),
        failures=[{k: cell_text(v) for k, v in f.items()} for f in failures[:max_failures]],
        n_failures=len(failures),
        failure_columns=list(dict.fromkeys(k for f in failures[:max_failures] for k in f)),
        samples=[_gen_sample(r, label_column) for r in rows[:max_samples]],
        lineage=lineage_stages(lineage, student=False),
        command=command_text(command),
        config=config_text(config),
    )
