"""Run reporting: metrics JSON, markdown tables, JSONL dumps and training / evaluation plots.

Every recipe ends by writing the same artifacts into its run directory, so benchmarks and model cards can
read them back without knowing which recipe produced them:

- ``metrics.json`` via :func:`write_metrics` (sorted keys, secrets redacted),
- ``results.md`` via :func:`write_table` (a GitHub markdown table),
- PNG plots via :func:`plot_training_curves`, :func:`plot_confusion_matrix` and :func:`plot_xy`.

Plots are drawn on bare ``matplotlib.figure.Figure`` objects (no pyplot): nothing touches the global backend or
figure registry, so plotting works on headless machines and leaks no figures across many plots.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from toolkit.configs import redact

logger = logging.getLogger(__name__)

MISSING = "–"  # en dash: shown for cells whose value is None / absent

__all__ = [
    "MISSING",
    "markdown_table",
    "plot_confusion_matrix",
    "plot_training_curves",
    "plot_xy",
    "redact_secrets",
    "write_jsonl",
    "write_metrics",
    "write_table",
]


def _json_default(obj: Any) -> Any:
    """Serialise dataclasses (e.g. ``metrics.MetricResult``), numpy / torch scalars and paths."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def redact_secrets(obj: Any) -> Any:
    """Redact secret-looking keys (api_key, hub_token, password...); token counts and tokenizer settings stay.

    Kept as the reporting-side name; the rules live in one place, :func:`toolkit.configs.redact`.
    """
    return redact(obj)


def write_metrics(run_dir: str | os.PathLike, metrics: dict, name: str = "metrics.json") -> Path:
    """Write ``metrics`` as pretty JSON into ``run_dir / name``, keys in insertion order (table columns keep theirs).

    Floats are written as-is (no rounding: downstream tables decide the precision). Anything whose key looks
    like a secret is redacted (:func:`redact_secrets`), since recipes sometimes dump their config next to the
    scores; token counts such as ``num_tokens`` are kept.

    Args:
        run_dir: Output directory (created if missing).
        metrics: Nested dict of metric values; numpy / torch scalars are converted to Python numbers.
        name: File name inside ``run_dir``.

    Returns:
        The path of the written file.
    """
    path = Path(run_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    # Convert exotic scalars first so redact() sees plain Python values rather than str()-ing them.
    plain = json.loads(json.dumps(metrics, default=_json_default))
    path.write_text(json.dumps(redact_secrets(plain), indent=2) + "\n", encoding="utf-8")
    logger.info("Wrote metrics to %s", path)
    return path


def _format_cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING
        return format(value, floatfmt)
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            return _format_cell(value.item(), floatfmt)
        except (TypeError, ValueError):
            pass
    # Pipes and newlines would break the table layout.
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None, floatfmt: str = ".2f") -> str:
    """Render ``rows`` as a GitHub-flavoured markdown table.

    Args:
        rows: One dict per table row.
        columns: Column order; defaults to the keys of all rows in first-seen order.
        floatfmt: ``format()`` spec applied to floats (ints and strings are printed as-is).

    Returns:
        The table text (header, separator, one line per row), ending with a newline. Missing values and
        ``None`` / NaN render as ``–``.
    """
    if columns is None:
        columns = []
        for row in rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
    columns = list(columns)
    if not columns:
        return ""
    lines = [
        "| " + " | ".join(str(c) for c in columns) + " |",
        "|" + "|".join(" --- " for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_format_cell(row.get(c), floatfmt) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_table(
    run_dir: str | os.PathLike,
    rows: Sequence[dict],
    columns: Sequence[str] | None = None,
    name: str = "results.md",
    floatfmt: str = ".2f",
) -> Path:
    """Write :func:`markdown_table` output to ``run_dir / name`` and return the path."""
    path = Path(run_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_table(rows, columns, floatfmt=floatfmt), encoding="utf-8")
    logger.info("Wrote table to %s", path)
    return path


def write_result_table(
    out_dir: str | os.PathLike,
    name: str,
    title: str,
    rows: Sequence[dict],
    columns: Sequence[str],
    notes: Sequence[str] = (),
    extra: dict | None = None,
) -> Path:
    """A results table as ``<name>.md`` (title, table, notes) + ``<name>.json`` (the same rows) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"## {title}", "", markdown_table(rows, columns=columns), "", *notes]
    (out / f"{name}.md").write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    payload = {"title": title, "rows": list(rows), "notes": list(notes), **(extra or {})}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=_json_default), encoding="utf-8")
    return out / f"{name}.md"


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write ``rows`` as JSON Lines (UTF-8, one object per line, non-ASCII kept readable), atomically: a killed
    writer leaves the previous file, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    logger.info("Wrote plot to %s", path)
    return path


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Keys in Trainer.log_history eval entries that are bookkeeping, not metrics worth plotting.
_EVAL_BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second")


def plot_training_curves(log_history: Sequence[dict], path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot train loss and eval loss / metrics against the global step.

    Args:
        log_history: A transformers ``Trainer.state.log_history``: train entries carry ``loss`` and
            ``step``; eval entries carry ``eval_*`` keys. The final summary entry (``train_loss``,
            ``train_runtime``…) is ignored.
        path: PNG output path.
        title: Optional figure title.

    Returns:
        ``path``. With no eval entries only the loss panel is drawn; with an empty history the figure says
        so instead of failing, so a recipe's reporting step never crashes a finished training run.
    """
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e and _is_number(e["loss"])]
    eval_loss = [
        (e["step"], e["eval_loss"])
        for e in log_history
        if "eval_loss" in e and "step" in e and _is_number(e["eval_loss"])
    ]
    eval_metrics: dict[str, list[tuple[float, float]]] = {}
    for entry in log_history:
        if "step" not in entry:
            continue
        for key, value in entry.items():
            if not key.startswith("eval_") or key == "eval_loss" or not _is_number(value):
                continue
            if any(key.endswith(b) for b in _EVAL_BOOKKEEPING):
                continue
            eval_metrics.setdefault(key[len("eval_") :], []).append((entry["step"], value))

    n_panels = 2 if eval_metrics else 1
    fig = Figure(figsize=(6 * n_panels, 4))
    axes = fig.subplots(1, n_panels, squeeze=False)
    ax = axes[0][0]
    if train:
        ax.plot(*zip(*train), label="train loss")
    if eval_loss:
        ax.plot(*zip(*eval_loss), marker="o", label="eval loss")
    if train or eval_loss:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no loss logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    if eval_metrics:
        ax2 = axes[0][1]
        for key, points in sorted(eval_metrics.items()):
            ax2.plot(*zip(*points), marker="o", label=key)
        ax2.set_xlabel("step")
        ax2.set_title("eval metrics")
        ax2.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_confusion_matrix(
    golds: Sequence[Any],
    preds: Sequence[Any],
    labels: Sequence[Any],
    path: str | os.PathLike,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Plot a confusion matrix (rows = gold, columns = predicted) as a PNG.

    Args:
        golds: Gold labels.
        preds: Predicted labels, aligned with ``golds``. Predictions outside ``labels`` (e.g. unparsable
            generations, ``None``) are counted in an extra "other" column rather than dropped, so the plot
            shows how often the student produced garbage.
        labels: Label order for the axes.
        path: PNG output path.
        normalize: Divide each row by its gold count (rows with no gold items stay zero).
        title: Optional title.

    Returns:
        ``path``.
    """
    if len(golds) != len(preds):
        raise ValueError(f"golds and preds differ in length: {len(golds)} != {len(preds)}")
    labels = list(labels)
    index = {label: i for i, label in enumerate(labels)}
    has_other = any(p not in index for p in preds)
    n_cols = len(labels) + int(has_other)
    counts = [[0.0] * n_cols for _ in labels]
    for gold, pred in zip(golds, preds):
        if gold not in index:
            raise ValueError(f"gold label {gold!r} is not in labels {labels}")
        counts[index[gold]][index.get(pred, len(labels))] += 1
    if normalize:
        counts = [[c / sum(row) if sum(row) else 0.0 for c in row] for row in counts]

    size = max(4.0, 0.6 * n_cols + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    im = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046)
    col_names = [str(label) for label in labels] + (["other"] if has_other else [])
    ax.set_xticks(range(n_cols), col_names, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), [str(label) for label in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if len(labels) <= 20:  # cell annotations become unreadable beyond that
        vmax = max((c for row in counts for c in row), default=0) or 1
        for gold_index, row in enumerate(counts):
            for pred_index, value in enumerate(row):
                text = f"{value:.2f}" if normalize else f"{int(value)}"
                ax.text(
                    pred_index,
                    gold_index,
                    text,
                    ha="center",
                    va="center",
                    color="white" if value > vmax / 2 else "black",
                )
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix"))
    return _save(fig, path)


def plot_xy(
    points: Sequence[dict],
    x: str,
    y: str,
    label_key: str | None,
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Plot ``y`` against ``x`` with one line (sorted by ``x``) per ``label_key`` group.

    Meant for accuracy-vs-cost / accuracy-vs-data-size comparisons between students and baselines. Points
    missing ``x`` or ``y`` (or with a non-numeric value) are skipped.

    Args:
        points: Dicts holding at least ``x`` and ``y`` keys.
        x: Key of the horizontal value.
        y: Key of the vertical value.
        label_key: Key whose value names the series; ``None`` puts all points in one series.
        path: PNG output path.
        title: Optional title.

    Returns:
        ``path``.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    for point in points:
        xv, yv = point.get(x), point.get(y)
        if not (_is_number(xv) and _is_number(yv)):
            continue
        name = str(point.get(label_key)) if label_key else y
        series.setdefault(name, []).append((xv, yv))
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, pts in series.items():
        pts.sort()
        ax.plot(*zip(*pts), marker="o", label=name)
    if series and label_key:
        ax.legend()
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    return _save(fig, path)
