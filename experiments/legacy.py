"""Intervals for the step-by-step tables made before ``results/PROTOCOL.md``, from their committed per-row results.

Those runs (``results/step_by_step/runs/<namespace>/<label>-<mode>-f<fraction>-s<seed>.json``) kept every test
row's correctness, so their step-by-step minus standard differences can be re-scored at the level of the
randomness, as the protocol asks, without training anything again: a seed-and-row bootstrap (``experiments.stats``)
and, per seed, an exact McNemar test. The tables stay exploratory (the runs were not pre-registered); this only
replaces pooled-over-seeds p-values with intervals.

Run: ``python -m experiments.legacy`` (writes ``results/step_by_step/intervals.{md,json}``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from scipy import stats as scipy_stats

from experiments import stats
from experiments.metrics import get_metric

logger = logging.getLogger("experiments")

SYSTEM_MODE = "task_prefix"
BASELINE_MODE = "standard"


def load_runs(runs_dir: Path) -> dict[tuple, dict[int, list[dict]]]:
    """``{(namespace, label_source, fraction, steps, mode): {seed: prediction rows}}`` of every committed run."""
    groups: dict[tuple, dict[int, list[dict]]] = {}
    for path in sorted(runs_dir.glob("*/*.json")):
        run = json.loads(path.read_text(encoding="utf-8"))
        if not run.get("predictions"):
            logger.info("%s holds no per-row predictions: skipped", path)
            continue
        key = (path.parent.name, run["label_source"], run["train_fraction"], run["global_steps"], run["mode"])
        groups.setdefault(key, {})[run["seed"]] = sorted(run["predictions"], key=lambda row: row["id"])
    return groups


def exact_mcnemar(system: list[dict], baseline: list[dict]) -> dict:
    """Rows only the system / only the baseline got right, and the exact two-sided McNemar p-value."""
    only_system = sum(s["correct"] and not b["correct"] for s, b in zip(system, baseline, strict=True))
    only_baseline = sum(b["correct"] and not s["correct"] for s, b in zip(system, baseline, strict=True))
    discordant = only_system + only_baseline
    p_value = 1.0 if discordant == 0 else scipy_stats.binomtest(only_system, discordant, 0.5).pvalue
    return {"only_system": only_system, "only_baseline": only_baseline, "p_value": float(p_value)}


def compare_groups(groups: dict[tuple, dict[int, list[dict]]], samples: int = 1000) -> list[dict]:
    """Step-by-step minus standard for every (namespace, labels, fraction, steps) that has both arms."""
    accuracy = get_metric("accuracy")
    rows = []
    for key, system in sorted(groups.items()):
        namespace, label_source, fraction, steps, mode = key
        baseline = groups.get((namespace, label_source, fraction, steps, BASELINE_MODE))
        if mode != SYSTEM_MODE or baseline is None:
            continue
        row_ids = {tuple(row["id"] for row in arm_rows) for arm in (system, baseline) for arm_rows in arm.values()}
        if len(row_ids) != 1:
            raise ValueError(f"{key}: the two arms scored different test rows")
        difference = stats.seed_row_bootstrap(system, baseline, accuracy, samples=samples)
        per_seed = {seed: exact_mcnemar(system[seed], baseline[seed]) for seed in sorted(set(system) & set(baseline))}
        rows.append(
            {
                "namespace": namespace,
                "label_source": label_source,
                "train_fraction": fraction,
                "steps": steps,
                "seed_ids": sorted(system),
                "test_rows": difference.rows,
                "standard": accuracy_per_seed(baseline, accuracy),
                "step_by_step": accuracy_per_seed(system, accuracy),
                **difference.as_dict(),
                "verdict": verdict(difference),
                "per_seed_mcnemar": per_seed,
            }
        )
    return rows


def accuracy_per_seed(per_seed: dict[int, list[dict]], accuracy) -> dict[int, float]:
    return {seed: round(accuracy(rows), 2) for seed, rows in sorted(per_seed.items())}


def verdict(difference: stats.Difference) -> str:
    if difference.seeds < 3:
        return "not shown (fewer than 3 seeds)"
    return stats.verdict(difference)


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "# Step-by-step minus standard, re-scored from the committed per-row results (EXPLORATORY: pre-protocol runs)",
        "",
        "Made by `python -m experiments.legacy`. Accuracy in points on the same 100 test rows for both arms; the "
        "difference is the mean over seeds, its 95% interval a seed-and-row bootstrap (1,000 resamples); per-seed "
        "exact McNemar p-values beside it. These runs were not pre-registered (the 16-step runs were planned after "
        "the 4-step result was seen), so no row here is evidence under `results/PROTOCOL.md`.",
        "",
        "| runs | labels | train share | steps | seeds | standard (per seed) | step-by-step (per seed) "
        "| difference [95% interval] | verdict | per-seed McNemar p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mcnemar = ", ".join(f"{v['p_value']:.2f}" for v in row["per_seed_mcnemar"].values())
        lines.append(
            f"| {row['namespace']} | {row['label_source']} | {row['train_fraction']:g} | {row['steps']} "
            f"| {row['seeds']} | {per_seed_text(row['standard'])} | {per_seed_text(row['step_by_step'])} "
            f"| {row['difference']:+.1f} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}] | {row['verdict']} "
            f"| {mcnemar} |"
        )
    return "\n".join(lines) + "\n"


def per_seed_text(values: dict[int, float]) -> str:
    return " / ".join(f"{value:.0f}" for value in values.values())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m experiments.legacy", description=__doc__.splitlines()[0])
    parser.add_argument("--runs_dir", default="results/step_by_step/runs", help="the committed per-run JSON files")
    parser.add_argument("--out", default="results/step_by_step/intervals", help="output path without suffix")
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    rows = compare_groups(load_runs(Path(args.runs_dir)), samples=args.samples)
    out = Path(args.out)
    out.with_suffix(".json").write_text(
        json.dumps({"exploratory": True, "rows": rows}, indent=2) + "\n", encoding="utf-8"
    )
    out.with_suffix(".md").write_text(to_markdown(rows), encoding="utf-8")
    logger.info("wrote %s.{md,json}: %d comparisons", out, len(rows))
    return rows


if __name__ == "__main__":
    main()
