"""The one experiment runner: a plan's runs, each seed into its own directory, resumable, then the plan's tables.

    python -m experiments experiments/plans/lmcor_wmt22_deen.yaml            # every unfinished run, then tables
    python -m experiments experiments/plans/lmcor_wmt22_deen.yaml --only k4  # one run (all its seeds)
    python -m experiments experiments/plans/lmcor_wmt22_deen.yaml --dry-run  # what would run, nothing runs

Each (run, seed) goes to ``runs/experiments/<plan>/<run>/seed<k>/`` through the recipe's public interface
(``python -m recipes.<recipe> --config <base> <overrides> --seed k --data_seed k --output_dir ...``). The runner
writes ``experiment.json`` beside the recipe's ``metrics.json``; a run whose ``metrics.json`` exists and whose
recorded arguments equal today's is finished and skipped, so a killed command resumes where it stopped. Each
finished run's ``predictions.jsonl`` is copied to ``results/<recipe>/predictions/<plan>/<run>-seed<k>.jsonl.gz``
and its record + ``metrics.json`` to ``results/<recipe>/runs/<plan>/<run>-seed<k>.json`` (both committed), and the tables (``results/<recipe>/<table>.md`` + ``.json``) are computed from those copies only.

The protocol (``results/PROTOCOL.md``): runs start only when the plan file is committed unchanged in git, and
every table names the plan's commit; ``--exploratory`` lifts the check and marks every table exploratory.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.plan import (
    Plan,
    PlanError,
    RunSpec,
    choices_used,
    fill_choices,
    fill_run_dirs,
    load_plan,
    runs_needed,
    to_argv,
)
from experiments.tables import render_tables

logger = logging.getLogger("experiments")
RECORD = "experiment.json"


class ProtocolError(RuntimeError):
    """A plan that the protocol does not allow to run (not committed, or changed since its commit)."""


@dataclass(frozen=True)
class PlanCommit:
    """The plan file's last commit, and whether the working tree holds it unchanged."""

    sha: str | None
    clean: bool


@dataclass
class Outcome:
    """What one invocation of the runner did."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def plan_commit(path: Path) -> PlanCommit:
    """The commit that last changed the plan file, and whether the file is tracked and unchanged since it."""
    path = path.resolve()
    top = _git(path.parent, "rev-parse", "--show-toplevel")
    if top.returncode:
        return PlanCommit(None, False)
    repo = Path(top.stdout.strip())
    relative = str(path.relative_to(repo))
    if _git(repo, "ls-files", "--error-unmatch", "--", relative).returncode:
        return PlanCommit(None, False)
    sha = _git(repo, "log", "-1", "--format=%H", "--", relative).stdout.strip() or None
    changed = _git(repo, "status", "--porcelain", "--", relative).stdout.strip()
    return PlanCommit(sha, bool(sha) and not changed)


def check_protocol(plan: Plan, exploratory: bool) -> PlanCommit:
    """Refuse a plan that is not committed unchanged, unless the runs are exploratory.

    Raises:
        ProtocolError: the plan file is untracked, uncommitted or changed since its last commit.
    """
    commit = plan_commit(plan.path)
    if not commit.clean and not exploratory:
        raise ProtocolError(
            f"{plan.path}: the plan must be committed unchanged in git before its runs start (results/PROTOCOL.md); "
            "commit it, or pass --exploratory to mark every table exploratory"
        )
    return commit


class Runner:
    """Runs a plan's (run, seed) pairs through a recipe and renders its tables.

    Args:
        plan: The parsed plan.
        runs_root: Where run directories go (``<runs_root>/<plan>/<run>/seed<k>``).
        results_root: Where tables and prediction copies go (``<results_root>/<recipe>/``).
        exploratory: Lift the committed-plan check; every table says "exploratory" (as it does when the plan
            itself says ``exploratory: true``).
    """

    def __init__(self, plan: Plan, runs_root: Path, results_root: Path, exploratory: bool = False):
        self.plan = plan
        self.runs_root = Path(runs_root)
        self.results_dir = Path(results_root) / plan.recipe
        self.allow_uncommitted = exploratory
        self.exploratory = exploratory or plan.exploratory  # a plan may declare itself exploratory (pre-protocol)

    # ---- where things go ----
    def run_dir(self, run: str, seed: int) -> Path:
        return self.runs_root / self.plan.name / run / f"seed{seed}"

    def predictions_copy(self, run: str, seed: int) -> Path:
        return self.results_dir / "predictions" / self.plan.name / f"{run}-seed{seed}.jsonl.gz"

    # ---- arguments ----
    def chosen_values(self, spec: RunSpec) -> dict[str, Any] | None:
        """The dev choices this run needs, or ``None`` while a run they (or its ``{run_dir:..}``) need is unfinished."""
        for name in runs_needed(spec):  # their output directories are read: a committed copy will not do
            needed = self.plan.run(name)
            if not (self.run_dir(name, needed.seeds[0]) / needed.done_file).is_file():
                return None
        chosen = {}
        for name in choices_used(spec):
            value = self.resolve_choice(name)
            if value is None:
                return None
            chosen[name] = value
        return chosen

    def resolve_choice(self, name: str) -> Any:
        """The x the choice's rule picks from its run's dev series (first seed), or ``None`` before that run ends."""
        choice = self.plan.choices[name]
        source = self.plan.run(choice.run)
        series: Any = self.metrics(source.name, source.seeds[0])
        if series is None:
            return None
        where = f"{choice.run}/seed{source.seeds[0]} metrics.json"
        for key in choice.series.split("."):
            if not isinstance(series, dict) or key not in series:
                raise PlanError(f"{self.plan.path}: choice {name!r}: {where} has no {choice.series!r}")
            series = series[key]
        points = [(p[choice.x], p[choice.y]) for p in series if choice.x in p and choice.y in p]
        if not points:
            raise PlanError(f"{self.plan.path}: choice {name!r}: {choice.series!r} has no ({choice.x}, {choice.y})")
        return pick(points, choice.rule, choice.tolerance, choice.higher_is_better)

    def argv(self, spec: RunSpec, seed: int, chosen: dict[str, Any]) -> list[str]:
        argv = ["--config", spec.config] if spec.config else []
        run_dirs = {name: str(self.run_dir(name, self.plan.run(name).seeds[0])) for name in runs_needed(spec)}
        own = fill_run_dirs(fill_choices(spec.overrides, chosen), run_dirs)
        shared = self.plan.overrides if spec.recipe == self.plan.recipe else {}  # a job of another script: its own
        argv += to_argv({**shared, **own})  # a run's own value wins over the plan's
        for flag in self.plan.seed_args if spec.seed_args is None else spec.seed_args:
            argv += [flag, str(seed)]
        return [*argv, "--output_dir", str(self.run_dir(spec.name, seed))]

    # ---- state ----
    def is_finished(self, spec: RunSpec, seed: int, argv: list[str]) -> bool:
        """The run's record holds today's arguments (a changed run is not finished).

        The record is the run directory's (``metrics.json`` written, ``experiment.json`` beside it) or, where that
        directory is gone (a fresh clone, a wiped ``runs/``), the committed copy under ``results/``: a finished run
        is never trained again just because its working directory was deleted.
        """
        record = self.record(spec.name, seed, done_file=spec.done_file)
        return record is not None and record.get("argv") == argv

    def record(self, run: str, seed: int, done_file: str = "metrics.json") -> dict | None:
        """A finished run's ``experiment.json``: from its run directory, else from its committed copy."""
        out = self.run_dir(run, seed)
        if (out / done_file).is_file() and (out / RECORD).is_file():
            return json.loads((out / RECORD).read_text(encoding="utf-8"))
        if out.exists():  # an unfinished or killed run: its directory, not an older copy, says where it stands
            return None
        return self.committed_copy(run, seed).get("experiment")

    def metrics(self, run: str, seed: int) -> dict | None:
        """A finished run's recipe ``metrics.json``: from its run directory, else from its committed copy."""
        path = self.run_dir(run, seed) / "metrics.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        if self.run_dir(run, seed).exists():
            return None
        return self.committed_copy(run, seed).get("metrics")

    def committed_copy(self, run: str, seed: int) -> dict:
        path = self.record_copy(run, seed)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    # ---- running ----
    def execute(self, spec: RunSpec, seed: int, argv: list[str], commit: PlanCommit) -> None:
        """Run one (run, seed) to completion and record it; a stale directory of other arguments is set aside."""
        out = self.run_dir(spec.name, seed)
        if out.exists():
            stale = out.with_name(f"{out.name}.stale-{int(time.time())}")
            logger.warning("%s holds a run of other arguments or an unfinished one: moved to %s", out, stale)
            out.rename(stale)
        out.mkdir(parents=True)
        started = time.time()
        wall, cpu = invoke_recipe(spec.recipe, argv, self.plan.launcher, out / "log.txt", self.plan.launch_args)
        if not (out / spec.done_file).is_file():
            raise RuntimeError(f"{spec.recipe} finished without writing {out / spec.done_file}")
        record = {
            "plan": self.plan.name,
            "plan_file": str(self.plan.path),
            "plan_commit": commit.sha,
            "exploratory": self.exploratory or not commit.clean,
            "run": spec.name,
            "seed": seed,
            "recipe": spec.recipe,
            "argv": argv,
            "started": started,
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
        }
        partial = out / f"{RECORD}.tmp"
        partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, out / RECORD)  # a kill leaves no half record
        self.copy_predictions(spec.name, seed)
        self.copy_record(spec.name, seed)

    def record_copy(self, run: str, seed: int) -> Path:
        return self.results_dir / "runs" / self.plan.name / f"{run}-seed{seed}.json"

    def copy_record(self, run: str, seed: int) -> None:
        """The run's record and its recipe's ``metrics.json`` in one committed file: ``runs/`` is not committed, so
        this copy is what lets anyone read a run's numbers, its dev curve and its cost without re-running it."""
        out = self.run_dir(run, seed)
        combined = {"experiment": json.loads((out / RECORD).read_text(encoding="utf-8"))}
        if (out / "metrics.json").is_file():
            combined["metrics"] = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        target = self.record_copy(run, seed)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(combined, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")

    def copy_predictions(self, run: str, seed: int) -> None:
        """Gzip the run's predictions into the results tree (byte-reproducible: no timestamp in the header)."""
        source = self.run_dir(run, seed) / "predictions.jsonl"
        if not source.is_file():
            logger.info("%s wrote no predictions.jsonl: nothing to copy", self.run_dir(run, seed))
            return
        target = self.predictions_copy(run, seed)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as raw, open(target, "wb") as handle:
            with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as packed:
                shutil.copyfileobj(raw, packed)

    def run(self, only: list[str] | None = None, dry_run: bool = False) -> Outcome:
        """Every planned (run, seed) not yet finished, in plan order; then the tables (not in a dry run)."""
        outcome = Outcome()
        unknown = sorted(set(only or []) - {spec.name for spec in self.plan.runs})
        if unknown:
            raise PlanError(f"{self.plan.path}: --only names runs the plan does not have: {unknown}")
        commit = plan_commit(self.plan.path) if dry_run else check_protocol(self.plan, self.allow_uncommitted)
        for spec in self.plan.runs:
            if only and spec.name not in only:
                continue
            if spec.optional and spec.name not in (only or []):
                logger.info("%s: optional, runs only when --only names it", spec.name)
                continue
            if spec.pending:
                logger.info("%s: pending, not run (%s)", spec.name, spec.pending)
                outcome.pending.append(spec.name)
                continue
            self.run_seeds(spec, commit, dry_run, outcome)
        if not dry_run:
            outcome.tables = render_tables(self, commit)
        return outcome

    def run_seeds(self, spec: RunSpec, commit: PlanCommit, dry_run: bool, outcome: Outcome) -> None:
        try:
            chosen = self.chosen_values(spec)
        except PlanError:  # e.g. the dev run's metrics.json lacks the series: this run cannot start, the rest can
            logger.exception("%s: its dev choice cannot be made", spec.name)
            outcome.failed += [f"{spec.name}/seed{seed}" for seed in spec.seeds]
            return
        for seed in spec.seeds:
            label = f"{spec.name}/seed{seed}"
            if chosen is None:
                logger.info("%s: waits for the dev choice of %s", label, choices_used(spec))
                outcome.waiting.append(label)
                continue
            argv = self.argv(spec, seed, chosen)
            if self.is_finished(spec, seed, argv):
                logger.info("%s: finished, skipped", label)
                outcome.skipped.append(label)
                if self.run_dir(spec.name, seed).exists():  # else the committed copies are all there is
                    if not self.predictions_copy(spec.name, seed).is_file():
                        self.copy_predictions(spec.name, seed)
                    if not self.record_copy(spec.name, seed).is_file():
                        self.copy_record(spec.name, seed)
                continue
            if dry_run:
                logger.info("%s: would run python -m %s %s", label, recipe_module(spec.recipe), " ".join(argv))
                outcome.ran.append(label)
                continue
            logger.info("%s: running", label)
            try:
                self.execute(spec, seed, argv, commit)
            except Exception:  # noqa: BLE001 - one failed run must not cost the rest of the plan; a rerun resumes it
                logger.exception("%s failed; the next runs still run", label)
                outcome.failed.append(label)
                continue
            outcome.ran.append(label)

    def records(self) -> dict[tuple[str, int], dict]:
        """``{(run, seed): experiment.json}`` of every finished run of the plan."""
        found = {}
        for spec in self.plan.runs:
            for seed in spec.seeds:
                record = self.record(spec.name, seed, done_file=spec.done_file)
                if record is not None:
                    found[(spec.name, seed)] = record
        return found


def pick(points: list[tuple[Any, float]], rule: str, tolerance: float, higher_is_better: bool) -> Any:
    """The x a dev-choice rule picks among ``(x, y)`` points (see :class:`experiments.plan.Choice`)."""
    points = sorted(points)
    if rule == "min":
        return min(points, key=lambda point: point[1])[0]
    if rule == "max":
        return max(points, key=lambda point: point[1])[0]
    best = max(y for _, y in points) if higher_is_better else min(y for _, y in points)
    for x, y in points:
        if (best - y if higher_is_better else y - best) <= tolerance:
            return x
    raise AssertionError("the best point is always within tolerance of itself")


def recipe_module(recipe: str) -> str:
    """``lmcor`` -> ``recipes.lmcor``; a dotted name (``data_gen.rationales``) is a module already."""
    return recipe if "." in recipe else f"recipes.{recipe}"


def invoke_recipe(
    recipe: str, argv: list[str], launcher: str, log_path: Path, launch_args: list[str] = ()
) -> tuple[float, float]:
    """Run the recipe once with ``argv``; returns (wall seconds, CPU seconds of the run).

    ``python`` starts ``python -m recipes.<name>``, ``accelerate`` starts ``accelerate launch <launch_args> -m
    recipes.<name>`` (e.g. ``--num_processes 2``), each with its output in ``log_path``; ``inprocess`` calls
    ``main(*make_parser().parse_args_and_config(argv))`` in this process.
    """
    module = recipe_module(recipe)
    start_wall = time.perf_counter()
    if launcher == "inprocess":
        start_cpu = time.process_time()
        loaded = importlib.import_module(module)
        loaded.main(*loaded.make_parser().parse_args_and_config(argv))
        return time.perf_counter() - start_wall, time.process_time() - start_cpu
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    prefix = [sys.executable, "-m"]
    if launcher == "accelerate":
        prefix = [sys.executable, "-m", "accelerate.commands.launch", *launch_args, "-m"]
    with open(log_path, "w", encoding="utf-8") as log:
        subprocess.run([*prefix, module, *argv], check=True, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return time.perf_counter() - start_wall, cpu


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.splitlines()[0])
    parser.add_argument("plan", help="A plan YAML (experiments/plans/<recipe>*.yaml).")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="Run only these runs (tables cover every run).")
    parser.add_argument("--dry-run", action="store_true", help="List what would run; run nothing, write nothing.")
    parser.add_argument("--exploratory", action="store_true", help="Allow an uncommitted plan; tables say so.")
    parser.add_argument("--runs-root", default="runs/experiments", help="Where run directories go.")
    parser.add_argument("--results-root", default="results", help="Where tables and predictions go.")
    return parser


def main(argv: list[str] | None = None) -> Outcome:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    plan = load_plan(args.plan)
    runner = Runner(plan, Path(args.runs_root), Path(args.results_root), exploratory=args.exploratory)
    try:
        outcome = runner.run(only=args.only, dry_run=args.dry_run)
    except ProtocolError as err:
        raise SystemExit(str(err)) from err
    for name, path in outcome.tables.items():
        logger.info("table %s -> %s", name, path)
    if outcome.failed:
        raise SystemExit(f"{len(outcome.failed)} runs failed (rerun to retry them): {', '.join(outcome.failed)}")
    return outcome
