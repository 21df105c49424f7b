"""The corrector against each test system, for LMCor runs whose prediction records predate per-system fields.

Newer LMCor runs write every test system's output into each prediction record (``baseline:system <name>``), and a
plan's table compares against them directly. The WMT22 de-en runs of ``lmcor_wmt22_deen.yaml`` predate that
field, so this module reads each system's test outputs from the data (the plan's own config, through the toolkit's
loaders: the same rows, matched by id) and compares the committed k = 4 predictions with each of them, with the
plan's seed-and-row bootstrap. The systems' outputs do not depend on the seed: one deterministic "run" each.

Run: ``python -m experiments.per_system experiments/plans/lmcor_wmt22_deen.yaml`` (writes
``results/lmcor/<plan>_per_system.{md,json}``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import yaml

from experiments import stats
from experiments.metrics import get_metric
from experiments.plan import load_plan
from experiments.runner import Runner
from experiments.tables import aligned, row_id, system_rows
from toolkit.methods.lmcor.config import LMCorConfig
from toolkit.methods.lmcor.data import load_splits
from toolkit.methods.lmcor.scoring import system_outputs

logger = logging.getLogger("experiments")


def plan_config(plan, data_dir: str | None) -> LMCorConfig:
    """The LMCor config of the plan's runs: its base YAML with the plan's shared overrides."""
    values = {**yaml.safe_load(Path(plan.config).read_text(encoding="utf-8")), **plan.overrides}
    fields = {field.name for field in dataclasses.fields(LMCorConfig)}
    return LMCorConfig(**{key: value for key, value in values.items() if key in fields}, data_dir=data_dir)


def per_system_table(plan_path: str, run: str = "k4", data_dir: str | None = None) -> dict:
    plan = load_plan(plan_path)
    runner = Runner(plan, Path("runs/experiments"), Path("results"))
    corrector = system_rows(runner, run, "prediction")
    order = [row_id(row, index) for index, row in enumerate(next(iter(corrector.values())))]
    corrector = aligned(corrector, order)
    config = plan_config(plan, data_dir)
    test_rows = {row["id"]: row for row in load_splits(config)["test"]}
    if set(order) != set(test_rows):
        raise ValueError(
            f"{plan_path}: the data's test rows are not the runs' rows ({len(test_rows)} vs {len(order)})"
        )
    ordered = [test_rows[row_id_] for row_id_ in order]
    references = [row["references"] for row in ordered]
    comparisons = []
    for name in config.test_systems:
        outputs = system_outputs(ordered, name)
        rows = [{"id": i, "prediction": o, "references": r} for i, o, r in zip(order, outputs, references)]
        # the same output under every corrector seed, as the plan's tables hold the selection baselines: a
        # deterministic baseline has no seed spread, and paired seeds give the same resamples as those tables
        system = {seed: rows for seed in corrector}
        for metric_name in ("chrf", "bleu"):
            metric = get_metric(metric_name)
            difference = stats.seed_row_bootstrap(corrector, system, metric, samples=plan.bootstrap_samples)
            comparisons.append(
                {
                    "baseline": f"system {name}",
                    "metric": metric_name,
                    "baseline_score": metric(rows),
                    **difference.as_dict(),
                    "verdict": stats.verdict(difference),
                }
            )
    return {"plan": plan.name, "run": run, "seeds": sorted(corrector), "rows": len(order), "comparisons": comparisons}


def to_markdown(table: dict) -> str:
    lines = [
        f"# {table['plan']}: corrector k = 4 against each unseen system",
        "",
        f"Made by `python -m experiments.per_system experiments/plans/{table['plan']}.yaml` from the committed "
        f"`{table['run']}` predictions ({len(table['seeds'])} seeds x {table['rows']} test rows) and each system's "
        "outputs read from the data for the same rows. Seed-and-row bootstrap, 95% intervals; a system's output is "
        "one deterministic run (no seed spread), held fixed across the corrector's seeds as the plan's tables hold the "
        "selection baselines. Eight comparisons at 95% each, no multiplicity correction: the plan's primary "
        "comparison is chrF against the system chosen on dev (Lan-Bridge).",
        "",
        "| baseline | metric | baseline score | corrector minus baseline [95% interval] | verdict |",
        "|---|---|---|---|---|",
    ]
    for row in table["comparisons"]:
        lines.append(
            f"| {row['baseline']} | {row['metric']} | {row['baseline_score']:.2f} "
            f"| {row['difference']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}] | {row['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.per_system", description=__doc__.splitlines()[0])
    parser.add_argument("plan", help="an LMCor plan whose runs are finished and committed")
    parser.add_argument("--run", default="k4", help="the plan's corrector run")
    parser.add_argument("--data_dir", default=None, help="data root (default: TOOLKIT_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    table = per_system_table(args.plan, args.run, args.data_dir)
    out = Path("results") / "lmcor" / f"{table['plan']}_per_system"
    out.with_suffix(".json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(to_markdown(table), encoding="utf-8")
    logger.info("wrote %s.{md,json}", out)
    return table


if __name__ == "__main__":
    main()
