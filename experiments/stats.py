"""Seed-level statistics for comparing two systems on the same test rows.

Two systems are compared through the difference of a *corpus* metric (BLEU, chrF, accuracy: any function of a
list of rows), so the test is at the level of the randomness of the experiment:

* :func:`seed_row_bootstrap` resamples training seeds, then test rows (the same rows for both systems), and
  recomputes the metric on every resample: the interval covers both sources of variance;
* :func:`paired_seed_test` is a paired t-test over seeds (one corpus score per seed and system).

:func:`verdict` turns an interval into the only two words a table may use: "met" when the whole 95% interval lies
above the threshold, otherwise "not shown".
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy
from scipy import stats as scipy_stats

Metric = Callable[[Sequence], float]
MET = "met"
NOT_SHOWN = "not shown"


@dataclass(frozen=True)
class Difference:
    """A difference ``system - baseline`` with its 95% (or ``confidence``) interval and a two-sided p-value."""

    estimate: float
    low: float
    high: float
    p_value: float | None
    method: str
    seeds: int
    rows: int

    def as_dict(self) -> dict:
        return {
            "difference": self.estimate,
            "ci_low": self.low,
            "ci_high": self.high,
            "p_value": self.p_value,
            "statistic": self.method,
            "seeds": self.seeds,
            "rows": self.rows,
        }


def _check_rows(system: Mapping[int, Sequence], baseline: Mapping[int, Sequence]) -> int:
    lengths = {len(rows) for rows in [*system.values(), *baseline.values()]}
    if not system or not baseline:
        raise ValueError("both systems need at least one seed of rows")
    if len(lengths) != 1:
        raise ValueError(f"every seed of both systems must score the same test rows; row counts: {sorted(lengths)}")
    rows = lengths.pop()
    if rows == 0:
        raise ValueError("no test rows to compare")
    return rows


def seed_scorer(per_seed: Mapping[int, Sequence], metric: Metric) -> Callable[[int, Sequence[int]], float]:
    """A function (seed, row indices) -> the metric on those rows of that seed.

    A metric with per-row statistics (``row_statistics`` / ``from_statistics``, see
    :class:`experiments.metrics.CorpusMetric`) is scored from one sum of precomputed statistics, so a bootstrap
    resample costs a vector sum, not a re-scoring of every sentence; any other metric is called on the rows.
    """
    if hasattr(metric, "row_statistics") and hasattr(metric, "from_statistics"):
        tables = {
            seed: numpy.array([metric.row_statistics(row) for row in rows], dtype=float)
            for seed, rows in per_seed.items()
        }
        return lambda seed, rows: metric.from_statistics(tables[seed][numpy.asarray(rows)].sum(axis=0))
    return lambda seed, rows: metric([per_seed[seed][i] for i in rows])


def _mean_score(score: Callable[[int, Sequence[int]], float], seeds: Sequence[int], rows: Sequence[int]) -> float:
    return statistics.fmean(score(seed, rows) for seed in seeds)


def _paired_seeds(system_seeds: list[int], baseline_seeds: list[int], drawn: list[int], rng: random.Random):
    """The baseline's seeds for a resample of the system's: the same seeds when both have them, else its own draw."""
    if set(drawn) <= set(baseline_seeds):
        return drawn
    return [rng.choice(baseline_seeds) for _ in baseline_seeds]


def seed_row_bootstrap(
    system: Mapping[int, Sequence],
    baseline: Mapping[int, Sequence],
    metric: Metric,
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Bootstrap the difference of a corpus metric, resampling training seeds and test rows together.

    Each resample draws seeds with replacement (paired: a seed both systems were trained with is drawn for both;
    a baseline with other seeds, e.g. one deterministic run, draws its own), then test rows with replacement (the
    same rows for both systems and every drawn seed), and recomputes ``metric`` on each drawn (seed, rows).

    Args:
        system: ``{training seed: rows}``; the rows of every seed are the same test rows, in the same order.
        baseline: The same for the baseline.
        metric: A corpus metric of a list of rows (it sees the rows themselves, not per-row scores).
        samples: Bootstrap resamples.
        confidence: Coverage of the percentile interval.
        seed: Seed of the resampling.

    Returns:
        The mean-over-seeds difference, its percentile interval and a two-sided bootstrap p-value.
    """
    n_rows = _check_rows(system, baseline)
    rng = random.Random(seed)
    system_seeds, baseline_seeds = sorted(system), sorted(baseline)
    all_rows = list(range(n_rows))
    score_system = seed_scorer(system, metric)
    score_baseline = seed_scorer(baseline, metric)
    estimate = _mean_score(score_system, system_seeds, all_rows) - _mean_score(
        score_baseline, baseline_seeds, all_rows
    )
    differences = []
    for _ in range(samples):
        drawn = [rng.choice(system_seeds) for _ in system_seeds]
        drawn_baseline = _paired_seeds(system_seeds, baseline_seeds, drawn, rng)
        rows = [rng.randrange(n_rows) for _ in all_rows]
        differences.append(_mean_score(score_system, drawn, rows) - _mean_score(score_baseline, drawn_baseline, rows))
    low, high = percentile_interval(differences, confidence)
    # add-one counts: a bootstrap of `samples` resamples cannot show p below 1 / (samples + 1)
    below = (sum(d <= 0 for d in differences) + 1) / (samples + 1)
    above = (sum(d >= 0 for d in differences) + 1) / (samples + 1)
    p_value = min(1.0, 2 * min(below, above))
    return Difference(estimate, low, high, p_value, "seed-and-row bootstrap", len(system_seeds), n_rows)


def paired_seed_test(
    system: Mapping[int, Sequence], baseline: Mapping[int, Sequence], metric: Metric, *, confidence: float = 0.95
) -> Difference:
    """Paired t-test over the seeds both systems share: one corpus score per (system, seed).

    Raises:
        ValueError: fewer than two shared seeds (no variance over seeds to test against).
    """
    n_rows = _check_rows(system, baseline)
    shared = sorted(set(system) & set(baseline))
    if len(shared) < 2:
        raise ValueError(f"a paired test over seeds needs >= 2 shared seeds, got {shared}")
    differences = [metric(system[seed]) - metric(baseline[seed]) for seed in shared]
    mean = statistics.fmean(differences)
    sd = statistics.stdev(differences)
    half = scipy_stats.t.ppf(0.5 + confidence / 2, len(shared) - 1) * sd / math.sqrt(len(shared))
    if sd == 0:
        p_value = 0.0 if mean != 0 else 1.0
    else:
        t_value = mean / (sd / math.sqrt(len(shared)))
        p_value = float(2 * scipy_stats.t.sf(abs(t_value), len(shared) - 1))
    return Difference(mean, mean - half, mean + half, p_value, "paired t-test over seeds", len(shared), n_rows)


def percentile_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of ``values`` (linear interpolation between order statistics)."""
    ordered = sorted(values)
    tail = (1 - confidence) / 2

    def quantile(q: float) -> float:
        position = q * (len(ordered) - 1)
        below = math.floor(position)
        above = min(below + 1, len(ordered) - 1)
        return ordered[below] + (ordered[above] - ordered[below]) * (position - below)

    return quantile(tail), quantile(1 - tail)


def verdict(difference: Difference, threshold: float = 0.0) -> str:
    """ "met" when the whole interval lies above ``threshold`` (e.g. 0: better; -2: within 2 points), else "not shown"."""
    return MET if difference.low > threshold else NOT_SHOWN


def unpaired_proportion_difference(
    system: float, baseline: float, rows: int, *, confidence: float = 0.95
) -> tuple[float, float, float]:
    """``system - baseline`` of two accuracies on the same ``rows`` rows, with a normal interval treating them as
    independent samples.

    Only for tables whose per-row predictions were not kept: without the pairing, the interval cannot use the
    rows both systems got right or wrong together. Errors of two classifiers on the same rows are usually positively
    correlated, which makes the paired interval narrower; this one is then conservative.

    Returns:
        ``(difference, low, high)`` in the accuracies' own unit.
    """
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    for value in (system, baseline):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"accuracies are shares in [0, 1], got {value}")
    difference = system - baseline
    spread = math.sqrt((system * (1 - system) + baseline * (1 - baseline)) / rows)
    half = scipy_stats.norm.ppf(0.5 + confidence / 2) * spread
    return difference, difference - half, difference + half
