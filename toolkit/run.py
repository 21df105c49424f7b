"""The end of every recipe run: one call that writes the same artifact set for every recipe and pushes when asked.

Every run directory gets, on the main process only:

- ``metrics.json``: the run record (schema below; secret-looking keys redacted);
- ``results.md``: the results tables, the same text that goes into the model card;
- ``predictions.jsonl``: one row per scored test example;
- ``training_curves.png``: the trainer's log history (loss, learning rate, eval metrics);
- ``run_config.json``: every argument dataclass, secrets redacted;
- ``README.md``: the model card (:func:`toolkit.publishing.cards.render_model_card`);
- ``report.html``: the page built from all of the above (:mod:`toolkit.publishing.report_artifacts`).

The run record (``metrics.json``) has the same four fields in every recipe, beside free method-specific ones:

- ``timings``: ``{"<phase>_s": seconds, ..., "total_s": seconds}`` (:func:`normalise_timings`);
- ``compute``: what the run cost (:meth:`toolkit.meter.Cost.as_dict`: ``wall_s``, ``cpu_s``, ``peak_rss_mb``,
  ``energy_wh``, and ``tokens`` / ``tokens_per_s`` when the recipe counted them);
- ``tables``: ``{table_name: [row dicts]}``, the main one named ``"results"`` (its first column names the system);
- ``predictions``: ``{"path": "predictions.jsonl", "rows": <count>}``, and ``"columns"`` (which column holds the
  input, the student's output, the references...: :data:`toolkit.publishing.report_artifacts.PREDICTION_ROLES`)
  when the recipe names them.

With ``push`` set, the folder (or ``push.folder``) is uploaded in one commit. A recipe therefore ends in
``finish_run(...)`` and nothing else: adding a fifth recipe needs no new saving code.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.configs import redact, save_config
from toolkit.meter import DEFAULT_WATTS_PER_CORE, Cost, process_cost
from toolkit.publishing import reporting
from toolkit.publishing.cards import render_model_card
from toolkit.publishing.hub import DEFAULT_IGNORE_PATTERNS, push_to_hub
from toolkit.publishing.report_artifacts import MAIN_TABLE, PREDICTION_ROLES, PREDICTIONS_FILE, report_from_run_dir

logger = logging.getLogger(__name__)

ARTIFACTS = (
    "metrics.json",
    "results.md",
    "predictions.jsonl",
    "training_curves.png",
    "run_config.json",
    "README.md",
    "report.html",
)
RECORD_FIELDS = ("timings", "compute", "tables", "predictions")
# How recipes have named a phase's seconds; every one becomes ``<phase>_s`` in the record.
_TIME_SUFFIXES = ("_wall_seconds", "_wall_s", "_seconds", "_secs", "_wall", "_s")

__all__ = [
    "ARTIFACTS",
    "RECORD_FIELDS",
    "Card",
    "Push",
    "finish_run",
    "normalise_timings",
    "record_compute",
    "render_tables",
    "run_record",
]


@dataclass
class Card:
    """What the model card says; see :func:`toolkit.publishing.cards.render_model_card` for each field."""

    base_model: str | None
    task: str
    recipe: str
    description: str
    model_name: str | None = None
    datasets: Sequence[str] = ()
    library_name: str | None = "transformers"
    lineage: Any = None
    extra_sections: dict[str, str] = field(default_factory=dict)


@dataclass
class Push:
    """Where to push: ``repo_id`` (``None`` = no push), the token (never saved) and what to leave out."""

    repo_id: str | None = None
    token: str | None = None
    private: bool = False
    folder: str | os.PathLike | None = None
    ignore_patterns: Iterable[str] = DEFAULT_IGNORE_PATTERNS


def normalise_timings(timings: Mapping[str, float | Cost], total_s: float | None = None) -> dict[str, float]:
    """``{"train_wall_s": 3, "generate_seconds": 1, "extract": Cost(2, ...)}`` -> ``{"train_s": 3, ..., "total_s"}``.

    Each key loses its time suffix (``_wall_s``, ``_seconds``, ``_s`` ...) and gets ``_s``; a :class:`Cost` gives its
    wall seconds. ``total_s`` is the one in ``timings`` when given, else the ``total_s`` argument, else the sum of
    the phases.

    Raises:
        ValueError: Two keys name the same phase, or a value is not a finite number of seconds.
    """
    phases: dict[str, float] = {}
    for key, value in timings.items():
        phase = next((key.removesuffix(end) for end in _TIME_SUFFIXES if key.endswith(end)), key)
        seconds = value.wall_s if isinstance(value, Cost) else value
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise ValueError(f"timings[{key!r}] must be a finite number of seconds, got {value!r}")
        if f"{phase}_s" in phases:
            raise ValueError(f"timings name the phase {phase!r} twice (e.g. train_s and train_seconds)")
        phases[f"{phase}_s"] = float(seconds)
    total = phases.pop("total_s", total_s)
    return {**phases, "total_s": sum(phases.values()) if total is None else total}


def record_compute(
    compute: Cost | None = None,
    *,
    tokens: int | None = None,
    train_s: float | None = None,
    watts_per_core: float = DEFAULT_WATTS_PER_CORE,
) -> dict[str, float | int]:
    """The record's ``compute``: ``compute`` (default: this whole process so far, :func:`toolkit.meter.process_cost`).

    ``tokens`` (e.g. trained on) overrides the cost's count; ``tokens_per_s`` is then over ``train_s`` when given
    (the phase that processed the tokens), else over the cost's wall seconds.
    """
    cost = compute if compute is not None else process_cost()
    if tokens is not None:
        cost = Cost(cost.wall_s, cost.cpu_s, cost.peak_rss_mb, tokens)
    record = cost.as_dict(watts_per_core)
    if cost.tokens is not None and train_s:
        record["tokens_per_s"] = cost.tokens / train_s
    return record


def _check_tables(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    if MAIN_TABLE not in tables:
        raise ValueError(f"tables must hold the main table {MAIN_TABLE!r}; got {sorted(tables)}")
    checked = {}
    for name, rows in tables.items():
        rows = list(rows)
        if not all(isinstance(row, Mapping) for row in rows):
            raise TypeError(f"tables[{name!r}] must be a list of row dicts")
        checked[str(name)] = [dict(row) for row in rows]
    return checked


def run_record(
    metrics: Mapping[str, Any],
    *,
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    timings: Mapping[str, float | Cost],
    compute: Mapping[str, float | int],
    prediction_rows: int,
    prediction_columns: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``metrics.json``'s content: the free ``metrics`` fields and the four record fields (module docstring).

    Raises:
        ValueError: ``metrics`` uses a record field name (the record would silently replace it).
    """
    taken = sorted(set(metrics) & set(RECORD_FIELDS))
    if taken:
        raise ValueError(f"metrics must not hold the run record's own fields {taken}: pass them to finish_run")
    predictions: dict[str, Any] = {"path": PREDICTIONS_FILE, "rows": prediction_rows}
    if prediction_columns is not None:
        unknown = sorted(set(prediction_columns) - set(PREDICTION_ROLES))
        if unknown:
            raise ValueError(f"prediction_columns: unknown roles {unknown}; expected some of {PREDICTION_ROLES}")
        predictions["columns"] = dict(prediction_columns)
    return {
        **metrics,
        "timings": normalise_timings(timings),
        "compute": dict(compute),
        "tables": _check_tables(tables),
        "predictions": predictions,
    }


def render_tables(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The record's tables as markdown: the main table first, every other one under its name."""
    parts = [reporting.markdown_table(list(tables[MAIN_TABLE]))] if tables.get(MAIN_TABLE) else []
    for name, rows in tables.items():
        if name != MAIN_TABLE and rows:
            parts.append(f"### {name}\n\n{reporting.markdown_table(list(rows))}")
    return "\n\n".join(parts) + "\n"


def _card_metrics(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    """``{system: {metric: value}}`` of the main table's numeric cells (the card's ``model-index``)."""
    out: dict[str, dict[str, float]] = {}
    for row in tables[MAIN_TABLE]:
        name_column = next(iter(row), None)
        numbers = {
            key: value
            for key, value in row.items()
            if key != name_column and isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        if name_column is not None and numbers:
            out[str(row[name_column])] = numbers
    return out


def finish_run(
    output_dir: str | os.PathLike,
    *,
    metrics: Mapping[str, Any],
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    predictions: Iterable[Mapping[str, Any]],
    prediction_columns: Mapping[str, Any] | None = None,
    timings: Mapping[str, float | Cost] | None = None,
    compute: Cost | None = None,
    tokens: int | None = None,
    watts_per_core: float = DEFAULT_WATTS_PER_CORE,
    results_md: str | None = None,
    log_history: Sequence[Mapping[str, Any]] = (),
    config: Mapping[str, Any],
    card: Card,
    card_metrics: Mapping[str, Any] | None = None,
    push: Push | None = None,
    is_main: bool = True,
) -> dict[str, Any]:
    """Write the run's artifacts (see the module docstring) and push when ``push.repo_id`` is set.

    Args:
        output_dir: The run directory.
        metrics: The method's own numbers (free fields of ``metrics.json``; not the record's field names).
        tables: ``{table_name: [row dicts]}``, the main one ``"results"``.
        predictions: Scored test rows.
        prediction_columns: ``{role: column}`` of the rows (roles: ``input``, ``prediction``, ``references`` or
            ``reference``, ``source``, and ``facts``: a list of columns); the report shows them accordingly.
        timings: Seconds per phase under any of the recipes' names (``train_s``, ``train_wall_s``,
            ``train_seconds``, a :class:`~toolkit.meter.Cost`); normalised by :func:`normalise_timings`.
        compute: What the run cost (default: this process so far, :func:`toolkit.meter.process_cost`).
        tokens: Tokens the run trained on (gives ``compute.tokens_per_s`` over the ``train`` phase).
        watts_per_core: Power of one busy core, for the energy estimate (``toolkit.meter.DEFAULT_WATTS_PER_CORE``).
        results_md: The results text for ``results.md`` and the card, when it says more than the tables
            (default: :func:`render_tables`).
        log_history: ``trainer.state.log_history`` (or an equivalent list of per-step dicts).
        config: ``{section: dataclass}`` of the run's arguments (redacted on write).
        card: The model card's content.
        card_metrics: The card's ``model-index`` metrics (default: the numbers of the main table, per system).
        push: Hub upload (``None`` = none).
        is_main: Only the main process writes; the others return at once.

    Returns:
        ``{"output_dir", "hub_url", "record"}``; ``record`` is what ``metrics.json`` holds (``None`` off the main
        process).
    """
    if not is_main:
        return {"output_dir": str(output_dir), "hub_url": None, "record": None}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictions = list(predictions)
    timings = dict(timings or {})
    train_s = normalise_timings(timings).get("train_s")
    run_compute = record_compute(compute, tokens=tokens, train_s=train_s, watts_per_core=watts_per_core)
    record = run_record(
        metrics,
        tables=tables,
        timings=normalise_timings(timings, total_s=run_compute["wall_s"]),  # no total given: the run's wall time
        compute=run_compute,
        prediction_rows=len(predictions),
        prediction_columns=prediction_columns,
    )
    results_md = results_md if results_md is not None else render_tables(record["tables"])
    reporting.write_metrics(out, record)
    (out / "results.md").write_text(results_md, encoding="utf-8")
    reporting.write_jsonl(out / PREDICTIONS_FILE, predictions)
    reporting.plot_training_curves(list(log_history), out / "training_curves.png")
    save_config(out / "run_config.json", **config)
    text = render_model_card(
        model_name=card.model_name or out.resolve().name,
        base_model=card.base_model,
        task=card.task,
        recipe=card.recipe,
        metrics=dict(card_metrics if card_metrics is not None else _card_metrics(record["tables"])),
        lineage=card.lineage,
        # JSON round trip: TrainingArguments hold str-Enums (IntervalStrategy...) that the card's YAML rejects.
        training_config=json.loads(json.dumps(redact(dict(config)), default=str)),
        datasets=list(card.datasets),
        library_name=card.library_name,
        description=card.description,
        extra_sections={"Results": results_md, **card.extra_sections},
    )
    (out / "README.md").write_text(text, encoding="utf-8")
    report_from_run_dir(out)
    url = None
    if push is not None and push.repo_id:
        folder = push.folder or out
        if Path(folder).resolve() != out.resolve():  # e.g. a merged checkpoint: it gets the card too
            (Path(folder) / "README.md").write_text(text, encoding="utf-8")
        url = push_to_hub(
            folder, push.repo_id, token=push.token, private=push.private, ignore_patterns=list(push.ignore_patterns)
        )
        logger.info("Pushed %s to %s", folder, url)
        if "hub_url" in metrics:  # the local record says where the run went (the pushed copy cannot)
            record["hub_url"] = url
            reporting.write_metrics(out, record)
    return {"output_dir": str(out), "hub_url": url, "record": record}
