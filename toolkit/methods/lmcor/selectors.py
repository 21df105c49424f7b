"""LMCor's training-free selectors on the corrector's own k candidates: first, random, MBR consensus, oracles.

They are the baselines of every results table (same rows, same candidates as the corrector).

**Oracle selection** (:func:`oracle_selection`): per headline metric, the per-row candidate choice that maximises
that *corpus* metric over the whole selection. Corpus BLEU / chrF / GLEU do not decompose over sentences, so the
exact maximum (k^N selections) is out of reach; we run a greedy coordinate ascent on the exact corpus score (the
same statistics and formula as :mod:`toolkit.evaluation.metrics`), started from the best of the table's selectors
and the per-sentence pick by that metric, accepting only strict improvements. The result is therefore >= every
selector row on its own metric by construction, and a *lower* estimate of the true selection ceiling (exact for
ROUGE-L, a mean of sentence scores). Oracle rows use the references: they are not real systems.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from toolkit.evaluation import gleu
from toolkit.evaluation.metrics import score_from_statistics, sentence_chrf, sentence_statistics
from toolkit.methods.lmcor.config import TASK_METRICS, TASK_TYPES
from toolkit.methods.lmcor.formats import clean_text, pick_candidates
from toolkit.methods.lmcor.scoring import prepare_hyps

logger = logging.getLogger(__name__)

METRIC_LABELS = {"gleu": "GLEU", "bleu": "BLEU", "chrf": "chrF", "rougeL": "ROUGE-L"}

__all__ = ["baseline_outputs", "mbr_select", "oracle_label", "oracle_select", "oracle_selection"]


def chrf_utility(hyp: str, ref: str) -> float:
    """Sentence chrF of ``hyp`` against ``ref``: the default utility of the MBR and per-sentence oracle picks."""
    value = sentence_chrf(hyp, ref)
    return float(getattr(value, "score", value))


def mbr_select(candidates: Sequence[str], utility: Callable[[str, str], float] | None = None) -> int:
    """Index of the consensus candidate: the highest mean utility (sentence chrF) against the other candidates.

    This is minimum-Bayes-risk decoding with the candidates as pseudo-references. Ties go to the earliest
    candidate (the greedy one in teacher pools). With one or two candidates it returns 0 (no consensus signal).
    """
    if not candidates:
        raise ValueError("mbr_select needs at least one candidate")
    if len(candidates) <= 2:
        return 0
    utility = utility or chrf_utility
    best = 0
    best_score = float("-inf")
    for index, hyp in enumerate(candidates):
        others = [other for other_index, other in enumerate(candidates) if other_index != index]
        score = sum(utility(hyp, other) for other in others) / len(others)
        if score > best_score + 1e-12:
            best = index
            best_score = score
    return best


def oracle_select(
    candidates: Sequence[str], references: Sequence[str], utility: Callable[[str, str], float] | None = None
) -> int:
    """Index of the best candidate by a sentence score (default sentence chrF, max over references).

    A per-sentence pick, not a bound on corpus metrics (corpus BLEU / GLEU / chrF do not decompose over sentences);
    the table's oracle rows come from :func:`oracle_selection`.
    """
    if not candidates or not references:
        raise ValueError("oracle_select needs candidates and references")
    utility = utility or chrf_utility
    scores = [max(utility(c, r) for r in references) for c in candidates]
    return max(range(len(candidates)), key=lambda index: (scores[index], -index))


def oracle_label(metric: str) -> str:
    """Table name of the oracle row that maximises ``metric`` (``"oracle selection (corpus GLEU search)"``)."""
    return f"oracle selection (corpus {METRIC_LABELS.get(metric, metric)} search)"


@dataclass
class CandidateStats:
    """Sufficient statistics of every candidate so that a selection's corpus score is ``score(sum of lifts)``."""

    # [row][candidate] -> numpy array (row space)
    stats: list[list[Any]]
    # row space -> corpus space (identity, or GLEU's sampled reference per draw)
    lift: Callable[[int, Any], Any]
    # summed corpus statistics -> the metric, exactly as toolkit.evaluation.metrics computes it
    score: Callable[[Any], float]

    def selection_score(self, selection: Sequence[int]) -> float:
        """The corpus score of choosing candidate ``selection[row]`` on every row."""
        return self.score(sum(self.lift(row, self.stats[row][choice]) for row, choice in enumerate(selection)))


def identity_lift(row: int, stats: Any) -> Any:
    """Row statistics that add up to corpus statistics as they are (BLEU, chrF, ROUGE-L)."""
    return stats


def sacrebleu_stats(metric: BLEU | CHRF, cands: list[list[str]], refs: list[list[str]]) -> CandidateStats:
    """Each candidate's sacrebleu sufficient statistics (the corpus score of a selection sums them)."""
    flat_hyps = [cand for row in cands for cand in row]
    flat_refs = [row_refs for row, row_refs in zip(cands, refs) for _ in row]
    flat = iter(sentence_statistics(metric, flat_hyps, flat_refs))
    stats = [[np.asarray(next(flat)) for _ in row] for row in cands]

    def score(totals: Any) -> float:
        return score_from_statistics(metric, totals.tolist())

    return CandidateStats(stats, identity_lift, score)


def rouge_stats(cands: list[list[str]], refs: list[list[str]]) -> CandidateStats:
    """Each candidate's sentence ROUGE-L F1 (the corpus score is their mean), as :func:`metrics.rouge` scores."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    stats = [
        [np.array([scorer.score_multi(row_refs, cand)["rougeL"].fmeasure]) for cand in row]
        for row, row_refs in zip(cands, refs)
    ]

    def score(totals: Any) -> float:
        return float(100.0 * totals[0] / len(cands))

    return CandidateStats(stats, identity_lift, score)


def gleu_stats(sources: list[str], cands: list[list[str]], refs: list[list[str]]) -> CandidateStats:
    """Each candidate's GLEU statistics against every reference, lifted per draw of the official 500 samples."""
    counts = tuple(len(row_refs) for row_refs in refs)
    draws = gleu.official_draws(counts, gleu.effective_iterations(counts, gleu.OFFICIAL_ITERATIONS))
    stats = [
        [np.array(gleu.reference_stats(source, cand, tuple(row_refs))) for cand in row]
        for source, row, row_refs in zip(sources, cands, refs)
    ]

    def lift(row: int, row_stats: Any) -> Any:
        return row_stats[draws[:, row]]

    def score(totals: Any) -> float:
        return float(100.0 * gleu.gleu_from_totals(totals).mean())

    return CandidateStats(stats, lift, score)


def candidate_stats(metric: str, sources: list[str], cands: list[list[str]], refs: list[list[str]]) -> CandidateStats:
    """The statistics of ``metric`` for every candidate, with the settings of :mod:`toolkit.evaluation.metrics`."""
    if metric == "bleu":
        return sacrebleu_stats(BLEU(), cands, refs)
    if metric == "chrf":
        return sacrebleu_stats(CHRF(), cands, refs)
    if metric == "rougeL":
        return rouge_stats(cands, refs)
    if metric == "gleu":
        return gleu_stats(sources, cands, refs)
    raise ValueError(f"no oracle for metric {metric!r}")


def hill_climb(stats: CandidateStats, start: list[int], max_passes: int) -> tuple[list[int], float]:
    """Coordinate ascent: per row, move to the candidate that strictly raises the corpus score; repeat."""
    selection = list(start)
    total = sum(stats.lift(row, stats.stats[row][choice]) for row, choice in enumerate(selection))
    best = stats.score(total)
    for _ in range(max_passes):
        moved = False
        for row, row_stats in enumerate(stats.stats):
            if len(row_stats) < 2:
                continue
            rest = total - stats.lift(row, row_stats[selection[row]])
            for choice in range(len(row_stats)):
                if choice == selection[row]:
                    continue
                trial = rest + stats.lift(row, row_stats[choice])
                value = stats.score(trial)
                if value > best + 1e-9:  # strict: no cycling on float noise
                    selection[row] = choice
                    total = trial
                    best = value
                    moved = True
        if not moved:
            break
    return selection, best


def sentence_pick(stats: CandidateStats) -> list[int]:
    """Per row, the candidate with the best score of its own (earliest on ties)."""
    return [
        max(range(len(row_stats)), key=lambda choice: (stats.score(stats.lift(row, row_stats[choice])), -choice))
        for row, row_stats in enumerate(stats.stats)
    ]


def oracle_selection(
    metric: str,
    sources: Sequence[str],
    candidates: Sequence[Sequence[str]],
    refs: Sequence[Sequence[str]],
    starts: Mapping[str, Sequence[str]],
    *,
    tokenize: str | None = None,
    max_passes: int = 10,
) -> list[str]:
    """The candidate per row that (greedily) maximises the corpus ``metric`` of the whole selection.

    Args:
        metric: ``gleu`` / ``bleu`` / ``chrf`` / ``rougeL`` (scored as
            :func:`~toolkit.methods.lmcor.scoring.score_outputs` does).
        sources: one source per row (GLEU needs them).
        candidates: the candidates each row offers (the ones the selectors chose from).
        refs: per-row references.
        starts: other selectors' outputs (``name -> one output per row``); those whose every output is one of its
            row's candidates are search starts, so the result scores >= each of them on ``metric``.
        tokenize: the hypothesis tokenisation of the table (:func:`~toolkit.methods.lmcor.scoring.prepare_hyps`).
        max_passes: cap on coordinate-ascent sweeps over the rows.

    Returns:
        One chosen candidate per row (as given in ``candidates``).
    """
    if not (len(sources) == len(candidates) == len(refs)) or not candidates:
        raise ValueError("oracle_selection needs as many sources, candidate lists and reference lists (>= 1)")
    if any(not row for row in candidates):
        raise ValueError("every row needs at least one candidate")
    prepared = [prepare_hyps(row, tokenize, [source] * len(row)) for source, row in zip(sources, candidates)]
    clean_refs = [[clean_text(ref) for ref in row_refs] for row_refs in refs]
    stats = candidate_stats(metric, [clean_text(source) for source in sources], prepared, clean_refs)
    # The per-sentence pick by the same metric (each row scored alone) is one more start.
    named = {f"sentence {metric} pick": sentence_pick(stats)}
    for name, outputs in starts.items():
        if len(outputs) == len(candidates) and all(out in row for out, row in zip(outputs, candidates)):
            named[name] = [list(row).index(out) for out, row in zip(outputs, candidates)]
        else:
            logger.debug("oracle %s: %r is not a selection among the candidates; not a start", metric, name)
    # Climb from the best start only: the result is still >= every start, at a fraction of the cost.
    start_scores = {name: stats.selection_score(selection) for name, selection in named.items()}
    best_start = max(start_scores, key=start_scores.get)
    selection, value = hill_climb(stats, named[best_start], max_passes)
    logger.info("oracle %s: %.2f (climbed from %r at %.2f)", metric, value, best_start, start_scores[best_start])
    return [candidates[row][choice] for row, choice in enumerate(selection)]


def baseline_outputs(
    rows: Sequence[Mapping[str, Any]],
    *,
    task: str,
    k: int,
    systems: Sequence[str] | None = None,
    seed: int = 0,
    utility: Callable[[str, str], float] | None = None,
    tokenize: str | None = None,
    extra_starts: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """Outputs of every training-free baseline on ``rows``, computed from the same k candidates the corrector sees.

    One oracle row per metric of the task (:func:`oracle_selection`, scored with the same
    ``tokenize`` as the table): each is >= every selector here on its own metric, and >= each ``extra_starts``
    output (e.g. the best single system) that is a selection among the same candidates.

    Returns:
        ``{"source copy" (GEC only), "first candidate", "random candidate", "MBR (chrF consensus)",
        oracle_label(metric) for each metric of the task}`` → one output per row.
    """
    if task not in TASK_TYPES:
        raise ValueError(f"task must be one of {TASK_TYPES}, got {task!r}")
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    if task == "gec":
        out["source copy"] = [clean_text(r["source"]) for r in rows]
    first, rand, mbr, pools = [], [], [], []
    for row in rows:
        cands = pick_candidates(row, k=k, systems=systems)
        if not cands:
            raise ValueError(f"row {row.get('id')}: no candidate from systems {systems}")
        first.append(cands[0])
        rand.append(cands[rng.randrange(len(cands))])
        mbr.append(cands[mbr_select(cands, utility)])
        pools.append(cands)
    out["first candidate"] = first
    out["random candidate"] = rand
    out["MBR (chrF consensus)"] = mbr
    starts = {"first candidate": first, "random candidate": rand, "MBR (chrF consensus)": mbr, **(extra_starts or {})}
    sources, refs = [r["source"] for r in rows], [r["references"] for r in rows]
    for metric in TASK_METRICS[task]:
        out[oracle_label(metric)] = oracle_selection(metric, sources, pools, refs, starts, tokenize=tokenize)
    return out
