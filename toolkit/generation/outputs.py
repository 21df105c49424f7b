"""A generation job's output folder: Arrow dataset + JSONL + failures + summary + config + card + report; shard merge.

Output folder of one job (or of one shard, under ``<output_dir>/shards/shard-XXXXX-of-YYYYY``)::

    dataset/          datasets.save_to_disk (Arrow)
    data.jsonl        the same rows as JSON lines
    data/             the same rows as Parquet: the card's ``default`` config (``load_dataset`` reads it)
    failures.jsonl    items that failed after retries: item_id, row_index, error_type, message, attempts
    failures/         the same failures as Parquet: the card's ``failures`` config
    summary.json      counts, tokens, cost, throughput, job-specific stats
    config.json       the job's configs with secrets redacted
    README.md         dataset card with lineage (toolkit.publishing.cards.render_dataset_card)
    report.html       the page built from the files above
    openai_batches/   teacher `mode: batch` only: one state file per submitted batch (its id) and the downloaded
                      result files; a re-run of the job polls these batches instead of submitting again

:func:`push_outputs` uploads it as a Hub dataset that ``datasets.load_dataset(repo)`` reads as the card declares:
the card and the two Parquet configs at the top, summaries, configs, batch state and the report under ``extras/``,
and no row twice (the Arrow folder, the JSONL copies and the shards' rows stay local).
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
from toolkit.publishing.cards import render_dataset_card, save_card
from toolkit.publishing.hub import push_files
from toolkit.publishing.lineage import Lineage
from toolkit.publishing.report_artifacts import report_from_data_gen_dir
from toolkit.publishing.reporting import write_jsonl
from toolkit.tasks.readers import read_jsonl  # strict: a bad line names file and line

logger = logging.getLogger("data_gen")

ROW_INDEX = "row_index"  # original position of an input row: shards are merged back in this order

__all__ = ["DATA_CONFIGS", "ROW_INDEX", "merge_shards", "push_outputs", "read_jsonl", "upload_plan", "write_outputs"]

DATA_FILE = "data/train-00000-of-00001.parquet"
FAILURES_FILE = "failures/train-00000-of-00001.parquet"
#: The card's ``configs:`` block: what ``load_dataset(repo)`` and ``load_dataset(repo, "failures")`` return.
DATA_CONFIGS = [
    {"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILE}], "default": True},
    {"config_name": "failures", "data_files": [{"split": "train", "path": FAILURES_FILE}]},
]
# A failure row's columns (toolkit.generation.engine), so an empty failures config still has a schema.
_FAILURE_COLUMNS = {"item_id": "", "request_index": 0, "error_type": "", "message": "", "attempts": 0, ROW_INDEX: 0}
# Uploaded as they are, at the top of the repo; every other file of the folder goes under extras/ or stays local.
_TOP_LEVEL = ("README.md", DATA_FILE, FAILURES_FILE)
_LOCAL_ONLY = ("dataset", "data.jsonl", "failures.jsonl")
_SHARD_EXTRAS = ("summary.json", "config.json")


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
    dataset = Dataset.from_list(rows) if rows else Dataset.from_dict({})
    dataset.save_to_disk(str(tmp))
    if (out_dir / "dataset").exists():
        shutil.rmtree(out_dir / "dataset")
    tmp.rename(out_dir / "dataset")  # never leave a half-written dataset under the final name
    write_jsonl(out_dir / "data.jsonl", rows)
    write_jsonl(out_dir / "failures.jsonl", failures)
    _write_parquet(out_dir / DATA_FILE, dataset)
    _write_parquet(out_dir / FAILURES_FILE, _failures_dataset(failures))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    save_config(out_dir / "config.json", **configs)
    _write_card(out_dir, rows, summary, configs, card)
    report_from_data_gen_dir(out_dir)  # a view of the files above: a report failure is logged, never fatal
    return out_dir


def _failures_dataset(failures: list[dict[str, Any]]) -> Dataset:
    if failures:
        return Dataset.from_list([_jsonable(f) for f in failures])
    empty = Dataset.from_list([_FAILURE_COLUMNS])  # infers the column types from one typical row
    return empty.select([])


def _write_parquet(path: Path, dataset: Dataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    dataset.to_parquet(str(tmp))
    tmp.replace(path)


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
        configs=DATA_CONFIGS,
        extras=_extras_text(),
    )
    save_card(out_dir, text)


def _extras_text() -> str:
    return (
        "`load_dataset(repo)` returns the generated rows with their lineage columns (`teacher_id`, "
        '`template_hash`, `sampling`, `usage`); `load_dataset(repo, "failures")` the items that failed after '
        "retries. The job's summary (`extras/summary.json`), redacted configuration (`extras/config.json`), "
        "report (`extras/report.html`) and, for batch jobs, the OpenAI batch state (`extras/openai_batches/`) "
        "are under `extras/`."
    )


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


def upload_plan(out_dir: str | os.PathLike) -> dict[str, Path]:
    """``{path in repo: local file}`` of a job folder as :func:`push_outputs` uploads it.

    The card and the two Parquet configs go to the top; ``dataset/``, ``data.jsonl`` and ``failures.jsonl`` hold
    the same rows and stay local; of the shards only their summaries and configs go up (their rows are in the
    merged Parquet already); every other file goes under ``extras/``.
    """
    root = Path(out_dir)
    plan = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        parts = rel.split("/")
        if rel in _TOP_LEVEL:
            plan[rel] = path
        elif parts[0] in _LOCAL_ONLY or parts[0] in ("data", "failures") or rel.endswith((".tmp", ".lock")):
            continue
        elif parts[0] == "shards" and parts[-1] not in _SHARD_EXTRAS:
            continue
        else:
            plan[f"extras/{rel}"] = path
    missing = [name for name in _TOP_LEVEL if name not in plan]
    if missing:
        raise FileNotFoundError(f"{root}: {missing} missing: was the job written by this version of write_outputs?")
    return plan


def push_outputs(out_dir: str | os.PathLike, repo_id: str, *, token: str | None = None, private: bool = False) -> str:
    """Upload a job folder as a Hub dataset (:func:`upload_plan`) in one commit; returns the commit URL."""
    return push_files(
        upload_plan(out_dir),
        repo_id,
        repo_type="dataset",
        token=token,
        private=private,
        commit_message=f"Upload {Path(out_dir).name} with distill-toolkit",
    )
