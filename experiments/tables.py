"""A plan's tables, computed from the committed prediction copies (and, for passthrough tables, metrics.json).

Table kinds (``kind:`` of a plan table):

* ``comparison`` (default): one row per (run, prediction field, ``where:`` selection of a long-format file: the
  prediction rows whose fields equal the given values) with each metric's mean ± sd over seeds, then
  every listed comparison ``system - baseline`` with its 95% interval, p-value and verdict ("met" / "not shown"),
  by the plan's statistic (seed-and-row bootstrap or paired test over seeds);
* ``series``: a list of points stored in each run's metrics.json (``path``: e.g. a learning curve), mean over
  seeds per x, as a table and a PNG;
* ``metrics``: a list of rows stored in each run's metrics.json (``path``: e.g. ``table``), passed through with
  the run's label and seed.

Every table names the plan file and the plan's commit, says "exploratory" when its runs were, and carries the
CPU-minutes of the runs it shows; ``<plan>_budget`` lists every run's wall and CPU time.
"""

from __future__ import annotations

import gzip
import json
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

from experiments import stats
from experiments.metrics import get_metric
from experiments.plan import PlanError

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402 - the backend is chosen before pyplot loads

logger = logging.getLogger("experiments.tables")
MIN_SEEDS = 3
EXPLORATORY = (
    "EXPLORATORY: no claim rests on this table (its plan was not committed before its runs, or predates "
    "results/PROTOCOL.md)"
)


def render_tables(runner: Any, commit: Any) -> dict[str, Path]:
    """Write every table of the runner's plan and its budget table; returns ``{table name: markdown path}``.

    Args:
        runner: A :class:`experiments.runner.Runner` (its plan, directories and run records).
        commit: The plan's :class:`experiments.runner.PlanCommit`.
    """
    plan = runner.plan
    records = runner.records()
    exploratory = runner.exploratory or any(r.get("exploratory") for r in records.values()) or not commit.clean
    header = {
        "plan": plan.name,
        "plan_file": str(plan.path),
        "plan_commit": commit_label(commit),
        "exploratory": exploratory,
        "statistic": plan.statistic,
        "primary_metric": plan.primary_metric,
        "planned_test_rows": plan.test_rows,
        "budget": plan.budget,
        "command": f"python -m experiments {plan.path}",
        "dev_choices": dev_choices(runner),
    }
    written = {}
    for table in plan.tables:
        kind = table.get("kind", "comparison")
        builder = {"comparison": comparison_table, "series": series_table, "metrics": metrics_table}[kind]
        body = builder(runner, table)
        runs = sorted({row["run"] for row in table.get("rows", [])})
        body["cpu_minutes"] = cpu_minutes(records, runs)
        # a plan revision may add runs: the table names every plan commit its runs were made under
        body["run_plan_commits"] = run_plan_commits(records, runs)
        written[table["name"]] = write_table(runner.results_dir, table, header, body)
    budget = budget_table(plan, records)
    budget["run_plan_commits"] = run_plan_commits(records, [spec.name for spec in plan.runs])
    budget_name = budget_table_name(plan.name)
    written[budget_name] = write_table(
        runner.results_dir, {"name": budget_name, "title": f"{plan.name}: compute"}, header, budget
    )
    return written


def budget_table_name(plan_name: str) -> str:
    """The name of a plan's compute table (every run's wall and CPU time) in results/<recipe>/."""
    return f"{plan_name}_budget"


def commit_label(commit: Any) -> str:
    if commit.clean:
        return commit.sha
    return f"{commit.sha} + uncommitted changes" if commit.sha else "never committed"


def dev_choices(runner: Any) -> dict[str, Any]:
    """Every registered dev choice with the value it took (``None`` before its run has finished)."""
    chosen = {}
    for name in runner.plan.choices:
        try:
            chosen[name] = runner.resolve_choice(name)
        except ValueError as error:  # the plan's PlanError: the table says why instead of failing
            chosen[name] = f"not made: {error}"
    return chosen


# ---- loading ----
def read_predictions(path: Path) -> list[dict] | None:
    if not path.is_file():
        return None
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def system_rows(runner: Any, run: str, field: str, where: dict | None = None) -> dict[int, list[dict]]:
    """``{seed: rows}`` of a run's copied predictions that match ``where``, each row's ``prediction`` from ``field``."""
    spec = runner.plan.run(run)
    per_seed = {}
    for seed in spec.seeds:
        rows = read_predictions(runner.predictions_copy(run, seed))
        if rows is None:
            continue
        rows = select_rows(rows, where or {}, f"{runner.plan.path}: run {run!r} seed {seed}")
        per_seed[seed] = [{**row, "prediction": row[resolve_field(row, field)]} for row in rows]
    return per_seed


def select_rows(rows: list[dict], where: dict, context: str) -> list[dict]:
    """The rows whose fields equal every value of ``where`` (one system's rows of a long-format file).

    Raises:
        PlanError: ``where`` names a field no row has, or keeps no row; the message starts with ``context``.
    """
    if not where:
        return rows
    unknown = sorted(key for key in where if not any(key in row for row in rows))
    if unknown:
        fields = sorted({key for row in rows for key in row})
        raise PlanError(f"{context}: where names {unknown}, fields no prediction row has; fields: {fields}")
    kept = [row for row in rows if all(key in row and row[key] == value for key, value in where.items())]
    if not kept:
        present = {key: sorted({str(row.get(key)) for row in rows}) for key in where}
        raise PlanError(f"{context}: where {where} keeps no prediction row; values present: {present}")
    return kept


def resolve_field(row: dict, field: str) -> str:
    """A prediction field by name, or by prefix when the name ends in ``*`` (e.g. ``baseline:best single*``)."""
    if not field.endswith("*"):
        if field not in row:
            raise KeyError(f"prediction rows have no field {field!r}; fields: {sorted(row)}")
        return field
    matches = [key for key in row if key.startswith(field[:-1])]
    if len(matches) != 1:
        raise KeyError(f"prediction field pattern {field!r} matches {matches}, not exactly one field")
    return matches[0]


def aligned(per_seed: dict[int, list[dict]], order: list[str]) -> dict[int, list[dict]]:
    """Every seed's rows in ``order`` of row ids; a seed scored on other rows is an error, never a silent drop."""
    result = {}
    for seed, rows in per_seed.items():
        by_id = {row_id(row, i): row for i, row in enumerate(rows)}
        if len(by_id) < len(rows):  # e.g. a long-format file holding several systems: ids repeat
            raise ValueError(f"seed {seed} repeats row ids: select one system's rows with `where:`")
        if set(by_id) != set(order):
            raise ValueError(f"seed {seed} was scored on other test rows than the table's first system")
        result[seed] = [by_id[key] for key in order]
    return result


def row_id(row: dict, index: int) -> str:
    return str(row["id"]) if row.get("id") is not None else f"row{index}"


# ---- comparison tables ----
def comparison_table(runner: Any, table: dict) -> dict:
    plan = runner.plan
    metrics = list(table.get("metrics") or plan.metrics)
    systems = {}
    rows = []
    order = None
    for spec in table["rows"]:
        if runner.plan.run(spec["run"]).pending:
            rows.append({"label": spec["label"], "run": spec["run"], "status": "pending"})
            continue
        per_seed = system_rows(runner, spec["run"], spec.get("field", "prediction"), spec.get("where"))
        if not per_seed:
            rows.append({"label": spec["label"], "run": spec["run"], "status": "not run"})
            continue
        first = next(iter(per_seed.values()))
        order = order or [row_id(row, i) for i, row in enumerate(first)]
        try:
            systems[spec["label"]] = aligned(per_seed, order)
        except ValueError as error:
            raise PlanError(f"{plan.path}: table {table['name']!r} row {spec['label']!r}: {error}") from error
        rows.append(summary_row(spec, systems[spec["label"]], metrics))
    ready = [e for e in table.get("comparisons", []) if e["system"] in systems and e["baseline"] in systems]
    compared = list(table.get("comparison_metrics") or [plan.primary_metric])
    comparisons = [compare(plan, systems, entry, compared) for entry in ready]
    # A pair compared at two thresholds is still one pair waiting for its runs.
    missing = list(
        dict.fromkeys(f"{e['system']} vs {e['baseline']}" for e in table.get("comparisons", []) if e not in ready)
    )
    notes = list(table.get("notes", []))
    if order is not None and len(order) != plan.test_rows:
        notes.append(f"The plan registered {plan.test_rows} test rows; these runs scored {len(order)}.")
    return {"rows": rows, "comparisons": comparisons, "metrics": compared, "notes": notes, "missing": missing}


def summary_row(spec: dict, per_seed: dict[int, list[dict]], metrics: list[str]) -> dict:
    row = {"label": spec["label"], "run": spec["run"], "status": "done", "seeds": len(per_seed)}
    row["test_rows"] = len(next(iter(per_seed.values())))
    for name in metrics:
        scores = [get_metric(name)(rows) for rows in per_seed.values()]
        row[name] = statistics.fmean(scores)
        row[f"{name} sd"] = statistics.stdev(scores) if len(scores) > 1 else None
    return row


def compare(plan: Any, systems: dict, entry: dict, metrics: list[str]) -> dict:
    """Every metric's difference ``system - baseline`` with its interval, p-value and verdict."""
    result = {"system": entry["system"], "baseline": entry["baseline"], "threshold": entry.get("threshold", 0.0)}
    system, baseline = systems[entry["system"]], systems[entry["baseline"]]
    for name in entry.get("metrics", metrics):
        difference = difference_by_plan(plan, system, baseline, get_metric(name))
        verdict = stats.verdict(difference, result["threshold"])
        # A claim needs the variance over seeds on both sides (results/PROTOCOL.md): a one-seed baseline's interval
        # would leave out its own seed-to-seed spread.
        if min(len(system), len(baseline)) < MIN_SEEDS:
            verdict = f"{stats.NOT_SHOWN} (fewer than {MIN_SEEDS} seeds)"
        result[name] = {**difference.as_dict(), "verdict": verdict}
    return result


def difference_by_plan(plan: Any, system: dict, baseline: dict, metric: Any) -> stats.Difference:
    """The plan's statistic; a paired test over seeds needs two shared seeds, else the seed-and-row bootstrap."""
    if plan.statistic == "paired_seed_test" and len(set(system) & set(baseline)) >= 2:
        return stats.paired_seed_test(system, baseline, metric)
    return stats.seed_row_bootstrap(system, baseline, metric, samples=plan.bootstrap_samples)


# ---- series and passthrough tables ----
def lookup(record: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def read_metrics(runner: Any, run: str, seed: int) -> dict | None:
    return runner.metrics(run, seed)


def series_table(runner: Any, table: dict) -> dict:
    """Mean over seeds of ``y`` per ``x`` of each row's series; plotted to ``<table>.png``."""
    x_key, y_key = table["x"], table["y"]
    rows = []
    for spec in table["rows"]:
        points: dict[Any, list[float]] = {}
        for seed in runner.plan.run(spec["run"]).seeds:
            metrics = read_metrics(runner, spec["run"], seed)
            for point in lookup(metrics, spec.get("path", table.get("path", ""))) or []:
                if x_key in point and point.get(y_key) is not None:
                    points.setdefault(point[x_key], []).append(point[y_key])
        rows += [
            {"series": spec["label"], x_key: x, y_key: statistics.fmean(ys), "seeds": len(ys)}
            for x, ys in sorted(points.items())
        ]
    if rows:
        plot_series(rows, x_key, y_key, runner.results_dir / f"{table['name']}.png", table.get("title", ""))
    return {"rows": rows, "notes": list(table.get("notes", []))}


def metrics_table(runner: Any, table: dict) -> dict:
    """Rows a recipe stored in metrics.json (``path``), labelled with the plan row and seed."""
    rows = []
    for spec in table["rows"]:
        for seed in runner.plan.run(spec["run"]).seeds:
            stored = lookup(read_metrics(runner, spec["run"], seed), spec.get("path", table.get("path", "")))
            for entry in stored or []:
                rows.append({"label": spec["label"], "seed": seed, **entry})
    return {"rows": rows, "notes": list(table.get("notes", []))}


def plot_series(rows: list[dict], x_key: str, y_key: str, path: Path, title: str) -> None:
    figure, axes = pyplot.subplots(figsize=(6, 4))
    for name in dict.fromkeys(row["series"] for row in rows):
        points = [(row[x_key], row[y_key]) for row in rows if row["series"] == name]
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
    axes.set_xlabel(x_key)
    axes.set_ylabel(y_key)
    axes.set_title(title)
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    pyplot.close(figure)


# ---- compute ----
def cpu_minutes(records: dict[tuple[str, int], dict], runs: Sequence[str]) -> float:
    return round(sum(r.get("cpu_s") or 0 for (run, _), r in records.items() if run in runs) / 60, 2)


def run_plan_commits(records: dict[tuple[str, int], dict], runs: list[str]) -> list[str]:
    return sorted({r.get("plan_commit") or "uncommitted" for (run, _), r in records.items() if run in runs})


def budget_table(plan: Any, records: dict[tuple[str, int], dict]) -> dict:
    rows = []
    for spec in plan.runs:
        for seed in spec.seeds:
            record = records.get((spec.name, seed))
            status = "pending" if spec.pending else ("done" if record else "not run")
            rows.append(
                {
                    "run": spec.name,
                    "seed": seed,
                    "status": status,
                    "wall_s": record.get("wall_s") if record else None,
                    "cpu_s": record.get("cpu_s") if record else None,
                }
            )
    total = cpu_minutes(records, [spec.name for spec in plan.runs])
    return {"rows": rows, "cpu_minutes": total, "notes": [f"CPU time of the finished runs: {total} CPU-minutes."]}


# ---- writing ----
def write_table(results_dir: Path, table: dict, header: dict, body: dict) -> Path:
    """``<results_dir>/<name>.json`` (everything) and ``<name>.md`` (header, rows, comparisons, notes)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    name = table["name"]
    payload = {"name": name, "title": table.get("title", name), **header, **body}
    (results_dir / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    path = results_dir / f"{name}.md"
    path.write_text(table_markdown(payload), encoding="utf-8")
    return path


def table_markdown(payload: dict) -> str:
    """The table as markdown: what made it (plan, commit, statistic, compute), its rows, differences and notes."""
    lines = [f"# {payload['title']}", ""]
    if payload["exploratory"]:
        lines += [f"**{EXPLORATORY}**", ""]
    lines += [
        f"Plan `{payload['plan_file']}` at commit `{payload['plan_commit']}`; made by `{payload['command']}`. "
        f"Statistic: {payload['statistic']}; primary metric: {payload['primary_metric']}; "
        f"CPU-minutes of these runs: {payload.get('cpu_minutes')}.",
        "",
        f"Runs made under plan commits: {', '.join(payload.get('run_plan_commits') or ['none yet'])}.",
        "",
    ]
    if payload.get("dev_choices"):
        lines += [f"Chosen on dev: {payload['dev_choices']}.", ""]
    lines.append(markdown_rows(payload["rows"]))
    if payload.get("comparisons"):
        lines += ["", "## Differences (95% intervals)", "", markdown_rows(comparison_rows(payload))]
    if payload.get("missing"):
        lines += ["", "Not yet comparable (a side has no finished run): " + "; ".join(payload["missing"]) + "."]
    lines += ["", *[f"- {note}" for note in payload.get("notes", [])]]
    return "\n".join(lines).rstrip() + "\n"


def comparison_rows(payload: dict) -> list[dict]:
    rows = []
    for entry in payload["comparisons"]:
        for name in payload["metrics"]:
            if name not in entry:
                continue
            result = entry[name]
            rows.append(
                {
                    "system": entry["system"],
                    "baseline": entry["baseline"],
                    "metric": name,
                    "difference": result["difference"],
                    "95% interval": f"[{result['ci_low']:+.2f}, {result['ci_high']:+.2f}]",
                    "p": result["p_value"],
                    "statistic": result["statistic"],
                    "seeds x rows": f"{result['seeds']} x {result['rows']}",
                    "verdict": result["verdict"],
                }
            )
            if entry.get("threshold"):  # a claim other than "better", e.g. -2: "within 2 points"
                rows[-1]["claim: difference above"] = entry["threshold"]
    return rows


def markdown_rows(rows: list[dict]) -> str:
    if not rows:
        return "(no finished runs yet)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(column)) for column in columns) + " |")
    return "\n".join(lines)


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value).replace("|", "\\|")
