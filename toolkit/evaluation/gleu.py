"""JFLEG's GLEU ("GLEU without tuning", Napoles et al. 2015, updated 2016), as the official keisks/jfleg ``gleu.py``.

Text is whitespace-tokenized (JFLEG is pre-tokenized). For each sentence and reference the official statistics are
computed (:func:`sentence_stats`): n-grams 1-4 of the hypothesis that match the reference, minus those that match
the source but not the reference, over the hypothesis n-gram count; statistics are summed over the corpus and
``GLEU = exp(min(0, 1 - r/c)) * exp(mean_n log(p_n))`` (0 if any statistic is 0).

How references are combined:

* Official (default, ``num_iterations=500``): for each iteration ``j`` the script seeds ``random.seed(j * 101)``,
  draws one reference per sentence with ``random.randint``, computes the corpus GLEU of that draw and reports the
  mean over iterations (with one reference per sentence: a single iteration). Reproduced here with the same seeds
  and calls, so it matches ``compute_gleu -n 4 --iter 500`` (JFLEG dev: source copy 38.20, reference 0 as the
  hypothesis 67.28). Sentence statistics are computed once per (source, hypothesis, references); only the
  reference choice is sampled, and the draws are cached per reference-count layout.
* ``num_iterations=None``: deterministic expected statistics: every sentence contributes the *mean* of its
  per-reference statistics (the expectation under that uniform draw) and GLEU is computed once. This is
  GLEU(E[stats]) instead of the official E[GLEU(stats)]; they agree closely (corpus sums concentrate) but not bit
  for bit.

With ragged references each row draws among its own references (the official script assumes the same count
everywhere). :func:`toolkit.evaluation.metrics.gleu` is the corpus score built from these statistics.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

GLEU_ORDER = 4
OFFICIAL_ITERATIONS = 500
STATS_WIDTH = 2 + 2 * GLEU_ORDER

__all__ = [
    "GLEU_ORDER",
    "OFFICIAL_ITERATIONS",
    "STATS_WIDTH",
    "effective_iterations",
    "gleu_from_stats",
    "gleu_from_totals",
    "official_draws",
    "reference_stats",
    "sampled_totals",
    "sentence_stats",
]


def _ngrams(tokens: list[str], order: int) -> Counter:
    return Counter(tuple(tokens[i : i + order]) for i in range(len(tokens) + 1 - order))


def sentence_stats(hyp: list[str], src: list[str], ref: list[str]) -> list[float]:
    """Sentence statistics against ONE reference, exactly as the official ``gleu.py`` ``gleu_stats``.

    ``[hyp_len, ref_len, m_1, d_1, ..., m_4, d_4]`` with
    ``m_n = max(|H_n & R_n| - |H_n & (S_n \\ R_n)|, 0)`` (clipped counts; ``S_n \\ R_n`` removes every
    source n-gram *type* that occurs in the reference, keeping the source counts of the rest) and
    ``d_n = max(len(hyp) + 1 - n, 0)``.
    """
    stats: list[float] = [len(hyp), len(ref)]
    for order in range(1, GLEU_ORDER + 1):
        hyp_ngrams = _ngrams(hyp, order)
        ref_ngrams = _ngrams(ref, order)
        source_not_ref = Counter({g: c for g, c in _ngrams(src, order).items() if g not in ref_ngrams})
        matched = sum((hyp_ngrams & ref_ngrams).values()) - sum((hyp_ngrams & source_not_ref).values())
        stats.append(max(matched, 0))
        stats.append(max(len(hyp) + 1 - order, 0))
    return stats


@lru_cache(maxsize=65536)
def reference_stats(source: str, hyp: str, refs: tuple[str, ...]) -> tuple[tuple[float, ...], ...]:
    """Whitespace-tokenized :func:`sentence_stats` of ``hyp`` against each reference (cached: tables rescore rows)."""
    hyp_tokens, source_tokens = hyp.split(), source.split()
    return tuple(tuple(sentence_stats(hyp_tokens, source_tokens, ref.split())) for ref in refs)


def gleu_from_stats(stats: Sequence[float]) -> float:
    """GLEU in [0, 1] from summed statistics (official ``GLEU.gleu`` without smoothing)."""
    if any(x == 0 for x in stats):
        return 0.0
    hyp_len, ref_len = stats[0], stats[1]
    log_prec = sum(math.log(m / d) for m, d in zip(stats[2::2], stats[3::2])) / GLEU_ORDER
    return math.exp(min(0.0, 1.0 - ref_len / hyp_len) + log_prec)


def gleu_from_totals(totals):
    """Vectorised :func:`gleu_from_stats` over the rows of a ``(iterations, STATS_WIDTH)`` array, in [0, 1]."""
    totals = np.asarray(totals, dtype=np.float64)
    zero = (totals == 0).any(axis=1)
    safe = np.where(totals == 0, 1.0, totals)
    log_prec = np.log(safe[:, 2::2] / safe[:, 3::2]).sum(axis=1) / GLEU_ORDER
    value = np.exp(np.minimum(0.0, 1.0 - safe[:, 1] / safe[:, 0]) + log_prec)
    return np.where(zero, 0.0, value)


@lru_cache(maxsize=32)
def official_draws(ref_counts: tuple[int, ...], num_iterations: int):
    """``(num_iterations, rows)`` reference indices drawn as the official script does (``random.seed(j * 101)``).

    Depends only on the number of references of each row, so one table's rows share one draw matrix.
    """
    draws = np.empty((num_iterations, len(ref_counts)), dtype=np.int64)
    for it in range(num_iterations):
        rng = random.Random(it * 101)  # same stream as the script's random.seed(j * 101)
        draws[it] = [rng.randint(0, n - 1) for n in ref_counts]
    return draws


def effective_iterations(ref_counts: Sequence[int], num_iterations: int) -> int:
    """As the official script: with one reference per row there is nothing to sample (a single iteration)."""
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    return 1 if max(ref_counts) == 1 else num_iterations


def sampled_totals(per_ref: Sequence[Sequence[Sequence[float]]], draws):
    """Corpus statistics of every iteration: ``totals[it] = sum_i per_ref[i][draws[it, i]]`` (exact integer sums)."""
    width = max(len(r) for r in per_ref)
    totals = np.zeros((draws.shape[0], STATS_WIDTH))
    for ref_slot in range(width):  # one matrix product per reference slot, not an (iterations, rows, 10) tensor
        slot = np.array([r[ref_slot] if ref_slot < len(r) else [0.0] * STATS_WIDTH for r in per_ref], dtype=np.float64)
        totals += (draws == ref_slot).astype(np.float64) @ slot
    return totals
