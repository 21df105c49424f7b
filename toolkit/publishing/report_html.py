"""Static, self-contained HTML reports (``report.html``) for recipe runs and data-gen jobs.

A report opens from disk with no network: CSS and the tiny row filter script are inline, figures are embedded
as base64 ``data:`` URIs, nothing is loaded from a CDN. Pages are rendered from the jinja2 templates shipped in
``toolkit/templates`` (autoescaped; only :func:`word_diff_html` builds markup, from escaped pieces).

Two entry points take explicit inputs, so a recipe or job can call them with what it already holds:

- :func:`write_run_report`: results table(s) with the best row marked, training / eval curves and the learning
  curve, a browsable sample of test rows (input, every baseline's output, the student's output and the references
  side by side; word diff against the source for GEC), lineage (teacher -> data -> student) and the exact command.
- :func:`toolkit.publishing.report_data_gen.write_data_gen_report`: counts, parse rate, failures, cost, tokens and sample rows with every candidate /
  rationale side by side.

``toolkit.publishing.report_artifacts`` builds both from what a run / job already wrote to disk. Secrets never reach the page:
configs and lineage go through :func:`toolkit.configs.redact`, command-line values of secret flags
(``--api_key``, ``--hub_token``) are replaced, and values of secret environment variables are scrubbed from the text.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import json
import logging
import mimetypes
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from toolkit.configs import REDACTED, SECRET_FIELD_PATTERN, is_secret_key, redact

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
# Metric names where a lower value is better (never picked by the "highest wins" rule of :func:`best_row_index`).
_LOWER_IS_BETTER = re.compile(
    r"(^|_)(ter|loss|error|err|cost|usd|energy|wh|time|latency|params|runtime)|_(s|ms)$|_ms_", re.I
)
# Rows chosen with the references (oracles), not systems a user could deploy: never marked best.
_NOT_A_CANDIDATE = re.compile(r"oracle|upper bound", re.I)
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")

__all__ = [
    "REPORT_NAME",
    "ResultsTable",
    "best_row_index",
    "embed_image",
    "redact_argv",
    "render",
    "word_diff_html",
    "write_run_report",
]


@dataclasses.dataclass
class ResultsTable:
    """One results table of a report.

    Attributes:
        rows: One dict per table row (first column names the system).
        columns: Column order (default: keys in first-seen order).
        title: Heading above the table.
        best: Index of the row to mark best; ``None`` picks it with :func:`best_row_index`, ``-1`` marks none.
        metric: Column that decides the best row (default: see :func:`best_row_index`).
        note: Free text shown under the table.
    """

    rows: list[dict]
    columns: list[str] | None = None
    title: str = "Results"
    best: int | None = None
    metric: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.columns is None:
            self.columns = list(dict.fromkeys(k for row in self.rows for k in row))
        if self.best is None:
            self.best, self.metric = best_row_index(self.rows, self.columns, self.metric)
        elif self.best == -1:
            self.best = None


def _number(value: Any) -> float | None:
    """A cell's numeric value: numbers as-is, strings by their leading number (``"0.51 ± 0.02"`` -> 0.51)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if value == value else None  # NaN is no score
    match = _NUMBER.match(str(value))
    return float(match.group(0)) if match else None


def best_row_index(
    rows: Sequence[Mapping], columns: Sequence[str] | None = None, metric: str | None = None
) -> tuple[int | None, str | None]:
    """Index of the best row and the metric that decided it.

    Without ``metric`` the first numeric column whose name mentions ``test`` wins, else the first numeric column
    that is not a cost / loss / time (see ``_LOWER_IS_BETTER``). Lower-is-better metrics pick the minimum. Rows whose
    first cell says oracle / upper bound were chosen with the references, not systems, and are never marked.

    Returns:
        ``(index, metric)``; index ``None`` when fewer than two rows compete, ``(None, None)`` when no column holds
        numbers.
    """
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    if not rows or not columns:
        return None, None
    name_col = columns[0]
    numeric = [c for c in columns[1:] if any(_number(r.get(c)) is not None for r in rows)]
    if metric is None:
        tests = [c for c in numeric if "test" in c.lower() and not _LOWER_IS_BETTER.search(c)]
        higher = [c for c in numeric if not _LOWER_IS_BETTER.search(c)]
        metric = (tests or higher or numeric or [None])[0]
    if metric is None:
        return None, None
    sign = -1.0 if _LOWER_IS_BETTER.search(metric) else 1.0
    scored = [
        (sign * _number(r.get(metric)), -i)  # ties: the first row wins
        for i, r in enumerate(rows)
        if _number(r.get(metric)) is not None and not _NOT_A_CANDIDATE.search(str(r.get(name_col, "")))
    ]
    return (-max(scored)[1], metric) if len(scored) >= 2 else (None, metric)  # one row: nothing was compared


def word_diff_html(source: str, text: str):
    """``text`` as HTML with the words it changed relative to ``source`` marked (``<del>`` / ``<ins>``).

    Word-level (whitespace tokens) via :class:`difflib.SequenceMatcher`, the way GEC edits are read. Every piece is
    escaped before it is wrapped, so the result is safe to insert as markup.
    """
    old_words = str(source).split()
    new_words = str(text).split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(escape(" ".join(new_words[j1:j2])))
            continue
        if op in ("delete", "replace"):
            parts.append(Markup("<del>%s</del>") % " ".join(old_words[i1:i2]))
        if op in ("insert", "replace"):
            parts.append(Markup("<ins>%s</ins>") % " ".join(new_words[j1:j2]))
    return Markup(" ").join(parts)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the values of secret flags (``--api_key X``, ``--hub_token=X``) replaced by ``<redacted>``."""
    out: list[str] = []
    hide_next = False
    for arg in map(str, argv):
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-"):
            flag, eq, _ = arg.lstrip("-").partition("=")
            if is_secret_key(flag.replace("-", "_")):
                if eq:
                    arg = f"{arg.split('=', 1)[0]}={REDACTED}"
                else:
                    hide_next = True
        out.append(arg)
    return out


def command_text(command: str | Sequence[str] | None) -> str:
    """The command as one shell line (``sys.argv`` by default), secrets redacted."""
    if command is None:
        command = sys.argv
    if isinstance(command, str):
        return command
    argv = redact_argv(command)
    prefix = "python " if argv and argv[0].endswith(".py") else ""
    return prefix + shlex.join(argv)


def config_text(config: Mapping | None) -> str | None:
    """Configs as indented JSON with secrets redacted (``None`` when there are none)."""
    return json.dumps(redact(dict(config)), indent=2, sort_keys=True, default=str) if config else None


def _scrub(text: str) -> str:
    """Remove values of secret environment variables (HF_TOKEN, OPENAI_API_KEY...) that slipped into ``text``."""
    for key, value in os.environ.items():
        if SECRET_FIELD_PATTERN.search(key) and value and len(value) >= 8:
            text = text.replace(value, REDACTED)
    return text


def embed_image(path: str | os.PathLike) -> str:
    """The file at ``path`` as a ``data:`` URI (base64), so the page needs nothing but itself."""
    mime = mimetypes.guess_type(str(path))[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _figure_group(stem: str) -> str:
    stem = stem.lower()
    if "learning" in stem or "fraction" in stem:
        return "Learning curve"
    if "curve" in stem or "loss" in stem:
        return "Training and evaluation curves"
    return "Other figures"


def _figures(images: Sequence[str | os.PathLike | tuple[str, str | os.PathLike]]) -> dict[str, list[dict]]:
    """``{group: [{"caption", "src"}]}`` in a fixed group order; missing files are skipped with a warning."""
    groups: dict[str, list[dict]] = {"Training and evaluation curves": [], "Learning curve": [], "Other figures": []}
    for image in images:
        caption, path = image if isinstance(image, tuple) else (None, image)
        path = Path(path)
        if not path.is_file():
            logger.warning("report: figure %s does not exist; left out", path)
            continue
        caption = caption or path.stem.replace("_", " ")
        groups[_figure_group(path.stem)].append({"caption": caption, "src": embed_image(path), "file": path.name})
    return {name: figs for name, figs in groups.items() if figs}


def lineage_stages(lineage: Any, student: bool = True) -> list[dict]:
    """Teacher -> data (-> student) boxes from a ``toolkit.publishing.lineage.Lineage`` or a dict (secrets redacted)."""
    if lineage is None:
        return []
    data = lineage.to_dict() if hasattr(lineage, "to_dict") else redact(dict(lineage))
    data = {k: v for k, v in data.items() if v not in (None, "", {}, [])}
    stages = {
        "Teacher": ["teacher_id", "template_hash", "sampling", "num_teacher_calls", "cost_usd"],
        "Data": ["generated_dataset", "dataset_fingerprint", "dataset_revision", "train_rows"],
        "Student": ["base_model", "student", "output_dir"],
    }
    out = []
    if not student:  # a data-gen job ends at the data; the student is trained later by a recipe
        del stages["Student"]
    for key, value in data.items():  # lineage collected from rows lists the distinct values: one needs no brackets
        if isinstance(value, list) and len(value) == 1:
            data[key] = value[0]
    for stage, keys in stages.items():
        fields = [(k, cell_text(data.pop(k))) for k in keys if k in data]
        out.append({"name": stage, "fields": fields})
    extra = data.pop("extra", {}) or {}
    rest = [(k, cell_text(v)) for k, v in sorted({**data, **extra}.items())]
    if rest:
        out.append({"name": "Other", "fields": rest})
    return out


def cell_text(value: Any) -> str:
    """Display text of a value: numbers trimmed, lists / dicts as compact JSON, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "–"
        if value == 0 or 1e-3 <= abs(value) < 1000:
            return f"{value:.4f}".rstrip("0").rstrip(".")  # 55.2, 0.5123: scores read best without exponents
        return f"{value:.3g}" if abs(value) < 1e-3 else f"{value:.1f}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, sort_keys=isinstance(value, dict), default=str)
    return str(value)


def _environment():
    env = Environment(
        loader=PackageLoader("toolkit.publishing", "templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,  # a missing variable is a bug, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = cell_text
    env.tests["numeric"] = lambda value: _number(value) is not None
    return env


def render(template: str, out_path: str | os.PathLike, **context: Any) -> Path:
    """Render ``toolkit/templates/<template>`` to ``out_path`` (atomically) and return the path."""
    context.setdefault("generated_at", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    text = _scrub(_environment().get_template(template).render(**context))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out_path)  # a reader never sees half a page
    logger.info("Wrote report to %s", out_path)
    return out_path


def _output(name: str, value: Any, kind: str) -> dict:
    text = cell_text(value)
    return {"name": name, "text": text if text else "(empty output)", "kind": kind if text else f"{kind} empty"}


def _sample(row: Mapping, diff: bool) -> dict:
    """Normalise one explicit sample row (see :func:`write_run_report`) for the template.

    Columns: the student first, then the references, then every baseline, so the eye lands on what was trained.
    """
    refs = row.get("references")
    if refs is None:
        refs = []
    elif isinstance(refs, (str, int, float, bool)) or not isinstance(refs, Sequence):
        refs = [refs]
    source = row.get("source", row.get("input"))
    columns = [_output(row.get("student_name", "student"), row["student"], "student")] if "student" in row else []
    columns += [_output("reference" if len(refs) == 1 else f"reference {i + 1}", r, "ref") for i, r in enumerate(refs)]
    columns += [_output(name, text, "baseline") for name, text in row.get("outputs", {}).items()]
    if diff and isinstance(source, str):
        for col in columns:
            if not col["kind"].endswith("empty"):
                col["html"] = word_diff_html(source, col["text"])
    return {
        "id": cell_text(row.get("id")) if row.get("id") is not None else None,
        "input": cell_text(row.get("input", source)),
        "source": source if diff and isinstance(source, str) and source != row.get("input") else None,
        "columns": columns,
        "extra": [(k, cell_text(v)) for k, v in (row.get("extra") or {}).items()],
    }


def write_run_report(
    out_dir: str | os.PathLike,
    *,
    title: str,
    results: Sequence[Mapping] | Sequence[ResultsTable] = (),
    best: int | str | None = None,
    images: Sequence[str | os.PathLike | tuple[str, str | os.PathLike]] = (),
    samples: Sequence[Mapping] = (),
    total_rows: int | None = None,
    diff: bool = False,
    lineage: Any = None,
    command: str | Sequence[str] | None = None,
    config: Mapping | None = None,
    notes: Sequence[str] = (),
    name: str = REPORT_NAME,
) -> Path:
    """Write a run's ``report.html`` into ``out_dir``.

    Args:
        out_dir: Run directory.
        title: Page title (recipe and task).
        results: Rows of one results table (dicts, first column names the system) or several :class:`ResultsTable`.
        best: For a single table of rows: index or first-column value of the best row (default: inferred).
        images: PNG paths (or ``(caption, path)``); grouped by name into curves / learning curve / other figures.
        samples: Test rows, each ``{"id", "input", "source" (diff base, default input), "outputs": {baseline: text},
            "student": text, "student_name", "references": list | str, "extra": {field: value}}``.
        total_rows: How many test rows the samples were taken from (shown as "N of M").
        diff: Mark each output's word edits against the source (GEC).
        lineage: ``toolkit.publishing.lineage.Lineage`` or dict (teacher -> data -> student).
        command: The command line; default ``sys.argv``. Secret flag values are redacted.
        config: Run configs (redacted before rendering).
        notes: Short paragraphs shown under the title.
        name: File name of the page.
    """
    if results and not isinstance(results[0], ResultsTable):
        rows = [dict(r) for r in results]
        if isinstance(best, str):
            first = next(iter(rows[0]), None)
            wanted, best = best, next((i for i, r in enumerate(rows) if str(r.get(first)) == best), None)
            if best is None:
                logger.warning("report: no results row is named %r; the best row is inferred", wanted)
        results = [ResultsTable(rows=rows, best=best)]
    return render(
        "run_report.html.j2",
        Path(out_dir) / name,
        title=title,
        notes=list(notes),
        tables=list(results),
        figures=_figures(images),
        samples=[_sample(s, diff) for s in samples],
        total_rows=total_rows if total_rows is not None else len(samples),
        diff=diff,
        lineage=lineage_stages(lineage),
        command=command_text(command),
        config=config_text(config),
    )
