"""Seed-and-row bootstrap and paired test over seeds: known effects are found, null effects are not."""

from __future__ import annotations

import random

import pytest

from experiments import stats
from experiments.metrics import get_metric

accuracy = get_metric("accuracy")


def _rows(rate: float, n: int, rng: random.Random) -> list[dict]:
    return [{"id": f"r{i}", "correct": rng.random() < rate} for i in range(n)]


def _system(rates: dict[int, float], n: int = 300, seed: int = 0) -> dict[int, list[dict]]:
    rng = random.Random(seed)
    return {s: _rows(rate, n, rng) for s, rate in rates.items()}


def test_bootstrap_finds_a_known_effect():
    better = _system({0: 0.75, 1: 0.75, 2: 0.75}, seed=1)
    worse = _system({0: 0.5, 1: 0.5, 2: 0.5}, seed=2)
    difference = stats.seed_row_bootstrap(better, worse, accuracy, samples=300)
    assert 15 < difference.estimate < 35
    assert difference.low > 0 and difference.p_value < 0.05
    assert stats.verdict(difference) == stats.MET
    assert (difference.seeds, difference.rows) == (3, 300)


def test_bootstrap_interval_of_a_null_effect_covers_zero():
    first = _system({0: 0.6, 1: 0.6, 2: 0.6}, seed=3)
    second = _system({0: 0.6, 1: 0.6, 2: 0.6}, seed=4)
    difference = stats.seed_row_bootstrap(first, second, accuracy, samples=300)
    assert difference.low < 0 < difference.high
    assert stats.verdict(difference) == stats.NOT_SHOWN


def test_bootstrap_resamples_seeds_so_seed_variance_widens_the_interval():
    steady = _system({0: 0.6, 1: 0.6, 2: 0.6}, n=400, seed=5)
    swinging = {0: steady[0][:200] + [{**r, "correct": True} for r in steady[0][200:]], 1: steady[1], 2: steady[2]}
    baseline = {0: steady[0]}
    narrow = stats.seed_row_bootstrap(steady, baseline, accuracy, samples=300)
    wide = stats.seed_row_bootstrap(swinging, baseline, accuracy, samples=300)
    assert wide.high - wide.low > 1.5 * (narrow.high - narrow.low)


def test_paired_seed_test_on_known_per_seed_differences():
    def rows(right: int) -> list[dict]:
        return [{"id": i, "correct": i < right} for i in range(100)]

    system = {0: rows(62), 1: rows(64), 2: rows(66)}
    baseline = {0: rows(60), 1: rows(60), 2: rows(60)}
    difference = stats.paired_seed_test(system, baseline, accuracy)
    assert difference.estimate == pytest.approx(4.0)
    # differences 2, 4, 6: sd 2, t(0.975, 2) = 4.303 -> half-width 4.303 * 2 / sqrt(3)
    assert difference.high - difference.estimate == pytest.approx(4.303 * 2 / 3**0.5, rel=1e-3)
    assert difference.low < 0 and stats.verdict(difference) == stats.NOT_SHOWN
    assert difference.p_value == pytest.approx(0.0742, abs=1e-3)


def test_paired_seed_test_needs_two_shared_seeds():
    rows = [{"id": 0, "correct": True}]
    with pytest.raises(ValueError, match=">= 2 shared seeds"):
        stats.paired_seed_test({0: rows, 1: rows}, {0: rows}, accuracy)


def test_systems_on_different_row_counts_are_refused():
    with pytest.raises(ValueError, match="same test rows"):
        stats.seed_row_bootstrap({0: [{"correct": True}]}, {0: [{"correct": True}] * 2}, accuracy)


def test_verdict_threshold_expresses_a_within_margin_claim():
    close = stats.Difference(-1.0, -1.8, -0.2, None, "x", 3, 100)
    assert stats.verdict(close) == stats.NOT_SHOWN
    assert stats.verdict(close, threshold=-2.0) == stats.MET


def test_percentile_interval_interpolates():
    assert stats.percentile_interval(list(range(101)), 0.9) == pytest.approx((5.0, 95.0))


def test_decomposed_metric_gives_the_same_bootstrap_as_rescoring():
    """Scoring a resample from summed per-row statistics equals calling the metric on the resampled rows."""
    system = _system({0: 0.7, 1: 0.6}, n=50, seed=6)
    baseline = _system({0: 0.5, 1: 0.55}, n=50, seed=7)
    fast = stats.seed_row_bootstrap(system, baseline, accuracy, samples=100)
    slow = stats.seed_row_bootstrap(system, baseline, lambda rows: accuracy(rows), samples=100)
    assert (fast.estimate, fast.low, fast.high, fast.p_value) == pytest.approx(
        (slow.estimate, slow.low, slow.high, slow.p_value)
    )


def test_unpaired_proportion_difference_matches_the_normal_formula_and_refuses_non_shares():
    difference, low, high = stats.unpaired_proportion_difference(0.8, 0.7, 1000)
    half = 1.959964 * ((0.8 * 0.2 + 0.7 * 0.3) / 1000) ** 0.5
    assert difference == pytest.approx(0.1) and low == pytest.approx(0.1 - half) and high == pytest.approx(0.1 + half)
    assert stats.unpaired_proportion_difference(0.8, 0.7, 100)[1] < low  # fewer rows: a wider interval
    with pytest.raises(ValueError, match="shares"):
        stats.unpaired_proportion_difference(81.4, 86.0, 1000)
