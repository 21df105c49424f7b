"""Experiment plans: one YAML per table set, committed before its runs start.

A plan names the recipe, its base config, the budget, the seeds, the test rows, the primary metric and the
statistic, then the runs (name, CLI overrides, seeds) and the tables drawn from them. See ``results/PROTOCOL.md``
and the plans in ``experiments/plans/``.

A comparison table's row names a run and, optionally, the prediction field holding that system's output
(``field:``) and the prediction rows that belong to it (``where: {field: value, ...}``): a long-format predictions
file holds several systems (one row per model, task and test item), and ``where:`` keeps one system's rows.

Overrides are ``{flag: value}``; a value may name a choice made on dev, ``"{choice:<name>}"``, which the runner
fills in from the plan's ``choices`` once the run that makes the choice has finished.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STATISTICS = ("seed_row_bootstrap", "paired_seed_test")
LAUNCHERS = ("python", "accelerate", "inprocess")
CHOICE_RULES = ("min", "max", "plateau")
CHOICE_PATTERN = re.compile(r"\{choice:([A-Za-z0-9_]+)\}")
RUN_DIR_PATTERN = re.compile(r"\{run_dir:([A-Za-z0-9_.-]+)\}")
# A command line has no null: the recipes' parsers read "None" as no number and "" as no path.
NULL_HINT = 'write "None" for no number or "" for no path, as the recipe parser reads them'
OPTIONAL = (
    "metrics",
    "overrides",
    "seed_args",
    "launcher",
    "choices",
    "tables",
    "bootstrap_samples",
    "description",
    "exploratory",
    "launch_args",
)
TABLE_KINDS = ("comparison", "series", "metrics")
SCALAR = (str, int, float, bool)  # the values a table row's `where:` may require of a prediction field
RUN_KEYS = ("name", "overrides", "seeds", "recipe", "config", "pending", "seed_args", "done_file", "optional")
REQUIRED = ("name", "recipe", "config", "budget", "seeds", "test_rows", "primary_metric", "statistic", "runs")


class PlanError(ValueError):
    """A plan that cannot be run; the message names the plan file."""


@dataclass(frozen=True)
class Choice:
    """A value chosen on dev: the x of ``series`` (a list of dicts in a run's metrics.json) that the rule picks.

    ``plateau`` picks the smallest x whose y is within ``tolerance`` of the best y (``higher_is_better`` says which
    way is best); ``min``/``max`` pick the x of the smallest/largest y.
    """

    name: str
    run: str
    series: str
    x: str
    y: str
    rule: str = "plateau"
    tolerance: float = 0.0
    higher_is_better: bool = False


@dataclass(frozen=True)
class RunSpec:
    """One planned run: a name, the recipe overrides, the seeds it repeats over."""

    name: str
    overrides: dict[str, Any]
    seeds: list[int]
    recipe: str
    config: str | None
    pending: str | None = None
    seed_args: list[str] | None = None
    done_file: str = "metrics.json"
    optional: bool = False


@dataclass
class Plan:
    """A parsed, validated plan (see the module docstring)."""

    path: Path
    name: str
    recipe: str
    config: str | None
    budget: str
    seeds: list[int]
    test_rows: int
    primary_metric: str
    statistic: str
    runs: list[RunSpec]
    metrics: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    seed_args: list[str] = field(default_factory=lambda: ["--seed", "--data_seed"])
    launcher: str = "python"
    choices: dict[str, Choice] = field(default_factory=dict)
    tables: list[dict] = field(default_factory=list)
    bootstrap_samples: int = 1000
    description: str = ""
    exploratory: bool = False
    launch_args: list[str] = field(default_factory=list)

    def run(self, name: str) -> RunSpec:
        for spec in self.runs:
            if spec.name == name:
                return spec
        raise PlanError(f"{self.path}: no run named {name!r}; runs: {[r.name for r in self.runs]}")


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan YAML.

    Raises:
        PlanError: a missing key, an unknown statistic/launcher/choice, a duplicate run, a run or choice naming
            another run that does not exist. The message names the file.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise PlanError(f"{path}: cannot read the plan: {err}") from err
    if not isinstance(raw, dict):
        raise PlanError(f"{path}: a plan is a YAML mapping")
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise PlanError(f"{path}: missing {missing}")
    # keys starting with "x-" hold YAML anchors shared by runs
    unknown = [key for key in raw if key not in REQUIRED + OPTIONAL and not str(key).startswith("x-")]
    if unknown:
        raise PlanError(f"{path}: unknown keys {unknown}")
    seeds = [int(s) for s in raw["seeds"]]
    plan = Plan(
        path=path,
        name=str(raw["name"]),
        recipe=str(raw["recipe"]),
        config=raw["config"],
        budget=str(raw["budget"]),
        seeds=seeds,
        test_rows=int(raw["test_rows"]),
        primary_metric=str(raw["primary_metric"]),
        statistic=str(raw["statistic"]),
        runs=[_run_spec(path, entry, seeds, raw) for entry in raw["runs"]],
        metrics=list(raw.get("metrics") or [raw["primary_metric"]]),
        overrides=dict(raw.get("overrides") or {}),
        seed_args=list(raw.get("seed_args") or ["--seed", "--data_seed"]),
        launcher=str(raw.get("launcher", "python")),
        choices={name: Choice(name=name, **spec) for name, spec in (raw.get("choices") or {}).items()},
        tables=list(raw.get("tables") or []),
        bootstrap_samples=int(raw.get("bootstrap_samples", 1000)),
        description=str(raw.get("description", "")),
        exploratory=bool(raw.get("exploratory", False)),
        launch_args=[str(arg) for arg in raw.get("launch_args") or []],
    )
    _validate(plan)
    return plan


def _run_spec(path: Path, entry: dict, default_seeds: list[int], raw: dict) -> RunSpec:
    if not isinstance(entry, dict) or "name" not in entry:
        raise PlanError(f"{path}: every run needs a name, got {entry!r}")
    unknown = sorted(set(entry) - set(RUN_KEYS))
    if unknown:
        raise PlanError(f"{path}: run {entry['name']!r} has unknown keys {unknown}")
    return RunSpec(
        name=str(entry["name"]),
        overrides=dict(entry.get("overrides") or {}),
        seeds=[int(s) for s in entry.get("seeds", default_seeds)],
        recipe=str(entry.get("recipe", raw["recipe"])),
        config=entry.get("config", raw["config"]),
        pending=entry.get("pending"),
        seed_args=entry.get("seed_args"),
        done_file=str(entry.get("done_file", "metrics.json")),
        optional=bool(entry.get("optional", False)),
    )


def _validate(plan: Plan) -> None:
    where = plan.path
    if plan.statistic not in STATISTICS:
        raise PlanError(f"{where}: statistic {plan.statistic!r} is not one of {STATISTICS}")
    if plan.launcher not in LAUNCHERS:
        raise PlanError(f"{where}: launcher {plan.launcher!r} is not one of {LAUNCHERS}")
    if plan.primary_metric not in plan.metrics:
        raise PlanError(f"{where}: primary_metric {plan.primary_metric!r} is not among metrics {plan.metrics}")
    names = [spec.name for spec in plan.runs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PlanError(f"{where}: duplicate run names {duplicates}")
    for choice in plan.choices.values():
        if choice.run not in names:
            raise PlanError(f"{where}: choice {choice.name!r} reads run {choice.run!r}, which the plan does not have")
        if choice.rule not in CHOICE_RULES:
            raise PlanError(f"{where}: choice {choice.name!r} has rule {choice.rule!r}, not one of {CHOICE_RULES}")
    for key, value in plan.overrides.items():
        if value is None:
            raise PlanError(f"{where}: override {key!r} is null: {NULL_HINT}")
    for spec in plan.runs:
        nulls = [key for key, value in spec.overrides.items() if value is None]
        if nulls:
            raise PlanError(f"{where}: run {spec.name!r} overrides {nulls} are null: {NULL_HINT}")
        for value in spec.overrides.values():
            for name in CHOICE_PATTERN.findall(str(value)):
                if name not in plan.choices:
                    raise PlanError(f"{where}: run {spec.name!r} uses {{choice:{name}}}, which choices lack")
            for name in RUN_DIR_PATTERN.findall(str(value)):
                if name not in names[: names.index(spec.name)]:
                    raise PlanError(
                        f"{where}: run {spec.name!r} uses {{run_dir:{name}}}: no earlier run has that name"
                    )
    for table in plan.tables:
        _validate_table(where, table, names)


def _validate_table(where: Path, table: dict, names: list[str]) -> None:
    if "name" not in table or not table.get("rows"):
        raise PlanError(f"{where}: every table needs a name and rows, got {table!r}")
    if table.get("kind", "comparison") not in TABLE_KINDS:
        raise PlanError(f"{where}: table {table['name']!r} has kind {table['kind']!r}, not one of {TABLE_KINDS}")
    labels = [row.get("label") for row in table["rows"]]
    for row in table["rows"]:
        if row.get("run") not in names:
            raise PlanError(f"{where}: table {table['name']!r} row {row.get('label')!r} names no plan run")
        _validate_where(where, table, row)
    for entry in table.get("comparisons", []):
        for side in ("system", "baseline"):
            if entry.get(side) not in labels:
                raise PlanError(f"{where}: table {table['name']!r} compares {entry.get(side)!r}, not a row label")


def _validate_where(path: Path, table: dict, row: dict) -> None:
    """A row's ``where:`` is a non-empty mapping of prediction field names to scalar values."""
    selection = row.get("where")
    if selection is None:
        return
    label = f"table {table['name']!r} row {row.get('label')!r}"
    if not isinstance(selection, dict) or not selection:
        raise PlanError(f"{path}: {label}: where must map prediction fields to values, got {selection!r}")
    bad = {key: value for key, value in selection.items() if not isinstance(key, str) or not isinstance(value, SCALAR)}
    if bad:
        raise PlanError(f"{path}: {label}: where takes field names and single values (str, number, bool), got {bad}")


def choices_used(spec: RunSpec) -> list[str]:
    """The dev choices a run's overrides depend on."""
    return sorted({name for value in spec.overrides.values() for name in CHOICE_PATTERN.findall(str(value))})


def runs_needed(spec: RunSpec) -> list[str]:
    """The earlier runs whose output directories a run's overrides name (``{run_dir:<run>}``)."""
    return sorted({name for value in spec.overrides.values() for name in RUN_DIR_PATTERN.findall(str(value))})


def fill_run_dirs(overrides: dict[str, Any], run_dirs: dict[str, str]) -> dict[str, Any]:
    """``overrides`` with every ``{run_dir:<run>}`` replaced by that run's output directory."""
    return {
        key: RUN_DIR_PATTERN.sub(lambda match: run_dirs[match.group(1)], value) if isinstance(value, str) else value
        for key, value in overrides.items()
    }


def fill_choices(overrides: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with every ``{choice:<name>}`` replaced by its chosen value (kept typed when it is the whole value)."""
    filled = {}
    for key, value in overrides.items():
        if isinstance(value, str) and CHOICE_PATTERN.fullmatch(value):
            filled[key] = chosen[CHOICE_PATTERN.fullmatch(value).group(1)]
        elif isinstance(value, str):
            filled[key] = CHOICE_PATTERN.sub(lambda match: str(chosen[match.group(1)]), value)
        else:
            filled[key] = value
    return filled


def to_argv(values: dict[str, Any]) -> list[str]:
    """``{flag: value}`` -> ``["--flag", "value", ...]``: lists give several values, booleans ``true``/``false``."""
    argv = []
    for key, value in values.items():
        argv.append(f"--{key}")
        if isinstance(value, bool):
            argv.append("true" if value else "false")
        elif isinstance(value, (list, tuple)):
            argv.extend(str(v) for v in value)
        else:
            argv.append(str(value))
    return argv
