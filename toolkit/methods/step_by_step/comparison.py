"""Distilling step-by-step vs standard training: paired comparisons of runs with the same labels, data and seeds.

Every run scores the same test rows, so two runs are compared row by row: the discordant pairs (rows only one of
them gets right) and McNemar's exact test on them, pooled over seeds (pairs = (seed, test row), matched seed by
seed). :func:`write_comparison` turns a grid of finished runs (``recipes/compare_step_by_step.py``) into
``results.md``, ``summary.md`` (several seeds), ``comparison.json`` and the data-fraction curve.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

from toolkit.publishing import reporting

__all__ = [
    "discordant",
    "fraction_curve_points",
    "grid_rows",
    "mcnemar_p",
    "pooled_mcnemar",
    "run_group",
    "seed_summary",
    "write_comparison",
]


def mcnemar_p(wins: int, losses: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs (binomial test of wins vs losses at 1/2)."""
    pairs = wins + losses
    if pairs == 0:
        return 1.0
    tail = sum(math.comb(pairs, i) for i in range(min(wins, losses) + 1)) / 2**pairs
    return min(1.0, 2 * tail)


def correctness_by_row(run_dir: str | os.PathLike) -> dict[str, bool]:
    """``{test row id: correct}`` from a run's ``predictions.jsonl``."""
    lines = Path(run_dir, "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return {row["id"]: row["correct"] for row in map(json.loads, lines)}


def count_discordant(run: dict[str, bool], base: dict[str, bool], names: tuple[str, str]) -> tuple[int, int]:
    """Rows only ``run`` gets right (wins) and rows only ``base`` gets right (losses), paired by row id."""
    if run.keys() != base.keys():
        raise ValueError(f"{names[0]} and {names[1]} were scored on different test rows")
    wins = sum(run[k] and not base[k] for k in run)
    losses = sum(base[k] and not run[k] for k in run)
    return wins, losses


def discordant(run: dict, base: dict, root: str) -> tuple[int, int]:
    """Wins and losses of ``run`` over ``base`` (each a finished run's metrics with its ``run`` folder under root)."""
    run_rows = correctness_by_row(Path(root, run["run"]))
    base_rows = correctness_by_row(Path(root, base["run"]))
    return count_discordant(run_rows, base_rows, (run["run"], base["run"]))


def run_group(run: dict) -> tuple:
    """What a run varies besides its seed: ``(train_fraction, label_source, mode)``."""
    return run["train_fraction"], run["label_source"], run["mode"]


def base_run(runs: list[dict], run: dict, base_mode: str) -> dict:
    """The ``base_mode`` run with the same fraction, labels and seed as ``run``."""
    fraction, labels, _ = run_group(run)
    matches = (r for r in runs if run_group(r) == (fraction, labels, base_mode) and r["seed"] == run["seed"])
    return next(matches)


def pooled_mcnemar(runs: list[dict], base_runs: list[dict]) -> tuple[int, int, float]:
    """Discordant pairs of ``runs`` vs ``base_runs`` matched by seed then test row id, pooled; exact McNemar p.

    Each run holds its ``predictions`` (``[{"id", "correct"}, ...]``); runs without a same-seed base are skipped.
    """
    wins = losses = 0
    for run in runs:
        base = next((b for b in base_runs if b["seed"] == run["seed"]), None)
        if base is None:
            continue
        run_rows = {p["id"]: p["correct"] for p in run["predictions"]}
        base_rows = {p["id"]: p["correct"] for p in base["predictions"]}
        run_wins, run_losses = count_discordant(run_rows, base_rows, (run["run"], base["run"]))
        wins += run_wins
        losses += run_losses
    return wins, losses, mcnemar_p(wins, losses)


def seed_summary(runs: list[dict], root: str, base_mode: str) -> list[dict]:
    """Per (fraction, labels, mode): mean ± std test accuracy over seeds, and McNemar vs ``base_mode`` on the
    paired predictions pooled over seeds (each pair = one test row under one seed, matched seed by seed)."""
    rows = []
    for key in dict.fromkeys(run_group(r) for r in runs):
        group = [r for r in runs if run_group(r) == key]
        accuracies = [r["test_accuracy"] for r in group]
        row = {
            "train_fraction": key[0],
            "labels": key[1],
            "mode": key[2],
            "seeds": len(group),
            "test_acc_mean": statistics.fmean(accuracies),
            "test_acc_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "n_train": group[0]["n_train"],
            "steps": group[0]["global_steps"],
        }
        if key[2] != base_mode:
            wins = losses = 0
            for run in group:
                run_wins, run_losses = discordant(run, base_run(runs, run, base_mode), root)
                wins += run_wins
                losses += run_losses
            row["pooled wins/losses"] = f"{wins}/{losses}"
            row["pooled McNemar p"] = mcnemar_p(wins, losses)
        rows.append(row)
    return rows


def grid_rows(runs: list[dict], root: str, base_mode: str) -> list[dict]:
    """One table row per run: its data, steps, accuracies, the gain over ``base_mode`` and McNemar's p on it.

    The teacher's own test accuracy is the last row when its test answers were parsed.
    """
    rows = []
    for run in runs:
        base = base_run(runs, run, base_mode)
        exclusions = run["train_exclusions"]
        wins, losses = (0, 0) if run is base else discordant(run, base, root)
        rows.append(
            {
                "train_fraction": run["train_fraction"],
                "labels": run["label_source"],
                "mode": run["mode"],
                "seed": run["seed"],
                "alpha": run["alpha"],
                "n_train": run["n_train"],
                "parse-fail kept/dropped": f"{exclusions['kept_parse_failure']}/{exclusions['excluded_parse_failure']}",
                "steps": run["global_steps"],
                "dev_acc": run["dev_accuracy"],
                "test_acc": run["test_accuracy"],
                f"Δ vs {base_mode}": run["test_accuracy"] - base["test_accuracy"],
                "wins/losses": "–" if run is base else f"{wins}/{losses}",
                "McNemar p": None if run is base else mcnemar_p(wins, losses),
                "train_s": run["timings"]["train_s"],
                "tok/s": run["train_tokens_per_s"],
            }
        )
    teacher = runs[0]["teacher_test"]
    if teacher["n_parsed"]:
        rows.append({"mode": "teacher (few-shot CoT)", "test_acc": teacher["teacher_accuracy_all"]})
    return rows


def fraction_curve_points(runs: list[dict]) -> list[dict]:
    """One point per (fraction, labels, mode): the mean test accuracy over seeds."""
    return [
        {
            "train_fraction": key[0],
            "test_accuracy": statistics.fmean(r["test_accuracy"] for r in runs if run_group(r) == key),
            "series": f"{key[1]}-{key[2]}",
        }
        for key in dict.fromkeys(map(run_group, runs))
    ]


def write_comparison(root: str, runs: list[dict], base_mode: str, title: str) -> dict[str, list[dict]]:
    """Write a grid's ``results.md``, ``summary.md`` (several seeds), ``comparison.json`` and fraction curve.

    Args:
        root: The grid's folder; each run's ``predictions.jsonl`` is in ``<root>/<run>/``.
        runs: Finished runs' metrics, each with its ``run`` folder name.
        base_mode: The mode every other mode is compared with (same labels, fraction and seed).
        title: The curve's title.

    Returns:
        ``{"rows": the results table, "summary": the seed summary (empty with one seed per run)}``.
    """
    rows = grid_rows(runs, root, base_mode)
    several_seeds = len({r["seed"] for r in runs}) > 1
    summary = seed_summary(runs, root, base_mode) if several_seeds else []
    os.makedirs(root, exist_ok=True)
    reporting.write_table(root, rows, floatfmt=".4f")
    if summary:
        reporting.write_table(root, summary, name="summary.md", floatfmt=".4f")
    Path(root, "comparison.json").write_text(json.dumps(runs, indent=2, default=str) + "\n", encoding="utf-8")
    curve = os.path.join(root, "data_fraction_curve.png")
    reporting.plot_xy(fraction_curve_points(runs), "train_fraction", "test_accuracy", "series", curve, title=title)
    return {"rows": rows, "summary": summary}
