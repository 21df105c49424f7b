"""Build ``report.html`` from the artifacts a recipe run or a data-gen job already wrote to disk.

A run directory holds (each optional) ``metrics.json`` (the run record of :mod:`toolkit.run`: its ``tables`` and
``predictions`` fields, ``learning_curve``, ``lineage``), the predictions file it names, PNG figures,
``run_config.json`` or ``config.json`` and the model card ``README.md`` (its front matter carries the task and the
lineage). The tables come from the record, never from ``results.md``. A data-gen output folder
holds ``summary.json``, ``data.jsonl``, ``failures.jsonl``, ``config.json`` and ``README.md``.

Both entry points log and return ``None`` when the report cannot be built (``strict=False``, the default): a report
is a view of finished work and must never fail the run or job that produced it. Regenerate one by hand with
``python -m toolkit.publishing.report_artifacts <dir>`` (the original command is then not known).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from toolkit.publishing.report_data_gen import write_data_gen_report
from toolkit.publishing.report_html import REPORT_NAME, ResultsTable, write_run_report
from toolkit.publishing.reporting import plot_xy
from toolkit.tasks.readers import read_jsonl

logger = logging.getLogger(__name__)

__all__ = [
    "MAIN_TABLE",
    "PREDICTIONS_FILE",
    "PREDICTION_ROLES",
    "guess_prediction_columns",
    "record_tables",
    "report_from_data_gen_dir",
    "report_from_run_dir",
    "samples_from_predictions",
]

# The run record's names (toolkit.run imports this module, so they are spelled here rather than imported).
MAIN_TABLE = "results"
PREDICTIONS_FILE = "predictions.jsonl"
# What the record's ``predictions.columns`` may name: the input, the student's output, the references (a list
# column) or one reference, the text a GEC output is diffed against, and columns shown as row facts.
PREDICTION_ROLES = ("input", "prediction", "references", "reference", "source", "facts")

_INPUT_KEYS = ("input", "source", "text", "prompt", "mr", "question")
_STUDENT_KEYS = ("prediction", "student", "output")
_REF_KEYS = ("references", "reference", "gold", "target", "gold_tags", "label")
_EXTRA_KEYS = ("correct", "valid", "parse_ok")
_SKIP_KEYS = ("id", "row_index")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _read_jsonl(path: Path) -> list[dict]:
    return read_jsonl(path) if path.is_file() else []


def record_tables(metrics: Mapping[str, Any]) -> list[ResultsTable]:
    """The run record's ``tables`` (``{name: [row dicts]}``, see :mod:`toolkit.run`) as report tables, main first."""
    tables = metrics.get("tables")
    if not isinstance(tables, Mapping):
        return []
    ordered = sorted(tables.items(), key=lambda item: item[0] != MAIN_TABLE)
    return [
        ResultsTable(rows=list(rows), title="Results" if name == MAIN_TABLE else name)
        for name, rows in ordered
        if isinstance(rows, list) and rows
    ]


def _first(row: Mapping, keys: tuple[str, ...], taken: set[str]) -> str | None:
    return next((k for k in keys if k in row and k not in taken), None)


def _pivot_long(rows: list[dict], max_samples: int, student_model: str) -> list[dict]:
    """Rows of one prediction per ``(model, task, test row)`` (multi-task recipe) -> one sample per test row."""
    seen: dict[tuple[str, str], int] = {}
    grouped: dict[tuple[int, str], dict] = {}
    for row in rows:
        model, task = str(row["model"]), str(row["task"])
        position = seen[(model, task)] = seen.get((model, task), -1) + 1
        sample = grouped.setdefault(
            (position, task), {"id": f"{task} #{position + 1}", "outputs": {}, "extra": {"task": task}}
        )
        sample.setdefault("input", row.get("text") or (" ".join(row["tokens"]) if row.get("tokens") else None))
        value = row.get("output", row.get("label", row.get("tags")))
        if model == student_model:
            sample["student"], sample["student_name"] = value, model
        else:
            sample["outputs"][model] = value
        gold = row.get("gold", row.get("gold_tags"))
        if gold is not None:
            sample.setdefault("references", [gold])
    samples = [grouped[k] for k in sorted(grouped)]  # row 1 of every task, then row 2...
    for sample in samples:
        sample["input"] = sample.get("input") or "(input text not recorded in predictions.jsonl)"
    return samples[:max_samples]


def guess_prediction_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """Column roles of a predictions row whose run record does not name them (run directories written before it).

    The input is the first of ``input/source/text/prompt/mr/question``, the student's output the first of
    ``prediction/student/output``, the references ``references`` (a list) or else the first of
    ``reference/gold/target/gold_tags/label`` (one reference); ``correct`` / ``valid`` / ``parse_ok`` are facts.
    """
    taken: set[str] = set(_SKIP_KEYS)
    roles: dict[str, Any] = {}
    for role, keys in (("input", _INPUT_KEYS), ("prediction", _STUDENT_KEYS), ("reference", _REF_KEYS)):
        key = _first(row, keys, taken)
        if key is not None:
            roles[role] = key
            taken.add(key)
    if roles.get("reference") == "references":
        roles["references"] = roles.pop("reference")
    source = next((key for key in ("source", "baseline:source copy") if key in row), None)
    if source is not None:  # LMCor's source-copy baseline is the source
        roles["source"] = source
    roles["facts"] = [key for key in _EXTRA_KEYS if key in row]
    return roles


def _sample(row: Mapping[str, Any], roles: Mapping[str, Any]) -> dict[str, Any]:
    """One report sample from one predictions row whose column roles are ``roles`` (see :data:`PREDICTION_ROLES`)."""
    sample: dict[str, Any] = {"id": row.get("id"), "input": row.get(roles.get("input"), "(no input column)")}
    source = row.get(roles["source"]) if roles.get("source") else None
    if isinstance(source, str):
        sample["source"] = source
    if roles.get("prediction") in row:
        sample["student"] = row[roles["prediction"]]
    if roles.get("references") in row:
        sample["references"] = list(row[roles["references"]])
    elif roles.get("reference") in row:  # one reference, whatever its type (a label, a tag list)
        sample["references"] = [row[roles["reference"]]]
    facts = list(roles.get("facts", ()))
    sample["extra"] = {key: row[key] for key in facts if key in row}
    shown = {*_SKIP_KEYS, *facts, *(roles.get(role) for role in ("input", "prediction", "references", "reference"))}
    sample["outputs"] = {key.removeprefix("baseline:"): value for key, value in row.items() if key not in shown}
    return sample


def samples_from_predictions(
    rows: list[dict],
    max_samples: int = 50,
    student_model: str = "multitask",
    columns: Mapping[str, Any] | None = None,
) -> list[dict]:
    """``predictions.jsonl`` rows -> sample rows for :func:`toolkit.publishing.report_html.write_run_report`.

    Args:
        rows: The predictions.
        max_samples: Rows kept.
        student_model: Long format (one row per model, task and test row; pivoted per test row): the model whose
            output is the student's.
        columns: Which column holds what (the run record's ``predictions.columns``, :data:`PREDICTION_ROLES`);
            ``None`` falls back to :func:`guess_prediction_columns`. Every other column is an output shown side by
            side (``baseline:<name>`` as ``<name>``).
    """
    if rows and "model" in rows[0] and "task" in rows[0]:
        return _pivot_long(rows, max_samples, student_model)
    return [_sample(row, columns or guess_prediction_columns(row)) for row in rows[:max_samples]]


def _card(run_dir: Path) -> tuple[str | None, dict]:
    """Title (first ``# `` heading) and YAML front matter of the ``README.md`` card in ``run_dir``."""
    path = run_dir / "README.md"
    if not path.is_file():
        return None, {}
    text = path.read_text(encoding="utf-8")
    meta: dict = {}
    if text.startswith("---\n") and "\n---" in text[4:]:
        try:
            meta = yaml.safe_load(text[4 : text.index("\n---", 4)]) or {}
        except yaml.YAMLError:
            logger.warning("report: %s has unreadable front matter", path)
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
    return title, meta if isinstance(meta, dict) else {}


def _learning_curve_png(run_dir: Path, metrics: Mapping) -> Path | None:
    """Plot ``metrics["learning_curve"]`` (``[{"step", metric: value}]``) to ``learning_curve.png`` if present."""
    curve = metrics.get("learning_curve") if isinstance(metrics, Mapping) else None
    if not curve or not isinstance(curve, list):
        return None
    points = [
        {"step": p["step"], "value": v, "metric": k}
        for p in curve
        if isinstance(p, Mapping) and "step" in p
        for k, v in p.items()
        if k != "step"
    ]
    return plot_xy(points, "step", "value", "metric", run_dir / "learning_curve.png", title="learning curve (test)")


def report_from_run_dir(
    run_dir: str | os.PathLike, *, max_samples: int = 50, strict: bool = False, **overrides: Any
) -> Path | None:
    """Write ``run_dir/report.html`` from the run's artifacts.

    Args:
        run_dir: A recipe's output directory.
        max_samples: Test rows shown (the first ones of ``predictions.jsonl``).
        strict: Raise instead of logging when the report cannot be built.
        **overrides: Keyword arguments of :func:`toolkit.publishing.report_html.write_run_report` that replace what was
            read from disk (``title``, ``results``, ``best``, ``lineage``, ``diff``, ``command``...).

    Returns:
        The page path, or ``None`` when it failed and ``strict`` is off.
    """
    try:
        run_dir = Path(run_dir)
        metrics = _read_json(run_dir / "metrics.json") or {}
        config = _read_json(run_dir / "run_config.json") or _read_json(run_dir / "config.json") or {}
        card_title, card_meta = _card(run_dir)
        about = card_meta.get("distill_toolkit") if isinstance(card_meta.get("distill_toolkit"), Mapping) else {}
        if card_title and about.get("recipe"):
            card_title = f"{about['recipe']} · {about.get('task', '')}: {card_title}"
        tables = record_tables(metrics)
        learning = _learning_curve_png(run_dir, metrics)
        images = [p for p in sorted(run_dir.glob("*.png")) if not p.name.startswith("report")]
        images.sort(key=lambda p: p.name != "training_curves.png")  # the main curves first
        record_predictions = metrics.get("predictions") or {}
        predictions = _read_jsonl(run_dir / record_predictions.get("path", PREDICTIONS_FILE))
        samples = samples_from_predictions(predictions, max_samples, columns=record_predictions.get("columns"))
        lineage = dict(metrics.get("lineage") or about.get("lineage") or {})
        lineage.setdefault("output_dir", str(run_dir))
        kwargs: dict[str, Any] = {
            "title": card_title or f"Run report: {run_dir.name}",
            "results": tables,
            "images": images,
            "samples": samples,
            "total_rows": len(predictions),
            "diff": about.get("task") == "gec" and any("source" in s for s in samples),
            "lineage": lineage,
            "config": config,
        }
        if learning is None and metrics.get("learning_curve") == []:
            kwargs["notes"] = ["No learning curve: the run evaluated at no intermediate step."]
        kwargs.update(overrides)
        return write_run_report(run_dir, **kwargs)
    except Exception:
        if strict:
            raise
        logger.exception("report: could not write %s/%s", run_dir, REPORT_NAME)
        return None


def report_from_data_gen_dir(out_dir: str | os.PathLike, *, strict: bool = False, **overrides: Any) -> Path | None:
    """Write ``out_dir/report.html`` for a data-gen job from its ``summary.json``, ``data.jsonl``, failures and config.

    ``**overrides`` replace keyword arguments of :func:`toolkit.publishing.report_html.write_data_gen_report`. Returns the page
    path, or ``None`` when it failed and ``strict`` is off.
    """
    try:
        out_dir = Path(out_dir)
        config = _read_json(out_dir / "config.json") or {}
        rationales = config.get("rationales") if isinstance(config.get("rationales"), Mapping) else {}
        card_title, _ = _card(out_dir)
        kwargs: dict[str, Any] = {
            "title": card_title or f"Data-gen job: {out_dir.name}",
            "summary": _read_json(out_dir / "summary.json") or {},
            "rows": _read_jsonl(out_dir / "data.jsonl"),
            "failures": _read_jsonl(out_dir / "failures.jsonl"),
            "config": config,
            "label_column": rationales.get("label_column", "label"),
        }
        kwargs.update(overrides)
        return write_data_gen_report(out_dir, **kwargs)
    except Exception:
        if strict:
            raise
        logger.exception("report: could not write %s/%s", out_dir, REPORT_NAME)
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m toolkit.publishing.report_artifacts DIR [DIR...]``: (re)write the report of each run or data-gen folder."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m toolkit.publishing.report_artifacts RUN_OR_DATA_GEN_DIR [...]", file=sys.stderr)
        return 2
    command = "(regenerated by toolkit.publishing.report_artifacts: the original command was not recorded)"
    for folder in argv:
        build = report_from_data_gen_dir if Path(folder, "summary.json").is_file() else report_from_run_dir
        path = build(folder, strict=True, command=command)
        print(path)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
