"""A generation job's output folder: Arrow dataset + JSONL + failures + summary + config + card + report; shard merge.

Output folder of one job (or of one shard, under ``<output_dir>/shards/shard-XXXXX-of-YYYYY``)::

    dataset/          datasets.save_to_disk (Arrow)
    data.jsonl        the same rows as JSON lines
    failures.jsonl    items that failed after retries: item_id, row_index, error_type, message, attempts
    summary.json      counts, tokens, cost, throughput, job-specific stats
    config.json       the job's configs with secrets redacted
    README.md         dataset card with lineage (toolkit.publishing.hub.render_dataset_card)
    report.html       the page built from the files above
    openai_batches/   teacher `mode: batch` only: one state file per submitted batch (its id) and the downloaded
                      result files; a re-run of the job polls these batches instead of submitting again
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from datasets import Dataset

from toolkit.configs import redact, save_config
from toolkit.publishing.hub import Lineage, render_dataset_card, save_card
from toolkit.publishing.report_artifacts import report_from_data_gen_dir
from toolkit.publishing.reporting import write_jsonl
from toolkit.tasks.readers import read_jsonl  # strict: a bad line names file and line

logger = logging.getLogger("data_gen")

ROW_INDEX = "row_index"  # original position of an input row: shards are merged back in this order

__all__ = ["ROW_INDEX", "merge_shards", "read_jsonl", "write_outputs"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    return value


def write_outputs(
    out_dir: Path,
    rows: list[dict[str, Any]],
    *,
    failures: list[dict[str, Any]],
    summary: dict[str, Any],
    configs: dict[str, Any],
    card: dict[str, Any],
) -> Path:
    """Write dataset (Arrow) + JSONL + failures + summary + redacted config + card + report.html into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [_jsonable(r) for r in sorted(rows, key=lambda r: r[ROW_INDEX])]
    tmp = out_dir / "dataset.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    (Dataset.from_list(rows) if rows else Dataset.from_dict({})).save_to_disk(str(tmp))
    if (out_dir / "dataset").exists():
        shutil.rmtree(out_dir / "dataset")
    tmp.rename(out_dir / "dataset")  # never leave a half-written dataset under the final name
    write_jsonl(out_dir / "data.jsonl", rows)
    write_jsonl(out_dir / "failures.jsonl", failures)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    save_config(out_dir / "config.json", **configs)
    _write_card(out_dir, rows, summary, configs, card)
    report_from_data_gen_dir(out_dir)  # a view of the files above: a report failure is logged, never fatal
    return out_dir


def _write_card(out_dir: Path, rows, summary, configs, card: dict[str, Any]) -> None:
    lineage = Lineage.from_generated(rows, generated_dataset=str(out_dir))
    stats = {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) and v is not None}
    text = render_dataset_card(
        name=card.get("name", out_dir.name),
        description=card.get("description", "Teacher-generated data (distill-toolkit)."),
        lineage=lineage,
        num_rows=len(rows),
        columns=card.get("columns") or (sorted(rows[0]) if rows else []),
        stats=stats,
        license=card.get("license", "other"),
        source_datasets=card.get("source_datasets"),
        generation_config=redact(configs),
    )
    save_card(out_dir, text)


def merge_shards(output_dir: str | os.PathLike, *, card: dict[str, Any] | None = None) -> Path:
    """Join ``output_dir/shards/*`` into ``output_dir`` in original row order; fails if a shard is missing."""
    root = Path(output_dir)
    shard_dirs = sorted((root / "shards").glob("shard-*-of-*"))
    if not shard_dirs:
        raise FileNotFoundError(f"no shards under {root / 'shards'}")
    total = int(shard_dirs[0].name.rsplit("-of-", 1)[1])
    have = {int(d.name.split("-")[1]) for d in shard_dirs if (d / "summary.json").is_file()}
    missing = sorted(set(range(total)) - have)
    if missing:
        raise FileNotFoundError(f"{root}: shards {missing} of {total} have not finished (no summary.json)")
    rows, failures, summaries = [], [], []
    for d in shard_dirs:
        rows += read_jsonl(d / "data.jsonl")
        failures += read_jsonl(d / "failures.jsonl")
        summaries.append(json.loads((d / "summary.json").read_text()))
    ids = [r[ROW_INDEX] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{root}: shards overlap (duplicate {ROW_INDEX}); were they run with different settings?")
    summary: dict[str, Any] = {"shards": total}
    for s in summaries:
        for k, v in s.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("items_per_s",):
                summary[k] = summary.get(k, 0) + v
            elif k not in summary:
                summary[k] = v
    configs = json.loads((shard_dirs[0] / "config.json").read_text())
    write_outputs(root, rows, failures=failures, summary=summary, configs=configs, card=card or {})
    logger.info("merged %d shards into %s: %d rows, %d failures", total, root, len(rows), len(failures))
    return root
