"""LMCor's training-free selectors on the corrector's own k candidates: first, random, MBR consensus, oracles.

They are the baselines of every results table (same rows, same candidates as the corrector); the oracle rows
come from :func:`toolkit.methods.lmcor.scoring.oracle_selection` and use the references (not real systems).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from toolkit.evaluation.metrics import sentence_chrf
from toolkit.methods.lmcor.formats import TASK_METRICS, TASK_TYPES, clean_text, pick_candidates
from toolkit.methods.lmcor.scoring import oracle_label, oracle_selection

__all__ = ["baseline_outputs", "mbr_select", "oracle_select"]


def _sentence_chrf(hyp: str, ref: str) -> float:
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
    utility = utility or _sentence_chrf
    best, best_score = 0, float("-inf")
    for i, hyp in enumerate(candidates):
        score = sum(utility(hyp, other) for j, other in enumerate(candidates) if j != i) / (len(candidates) - 1)
        if score > best_score + 1e-12:
            best, best_score = i, score
    return best


def oracle_select(
    candidates: Sequence[str], references: Sequence[str], utility: Callable[[str, str], float] | None = None
) -> int:
    """Index of the best candidate by a sentence score (default sentence chrF, max over references).

    A per-sentence pick, not a bound on corpus metrics (corpus BLEU / GLEU / chrF do not decompose over sentences);
    the table's oracle rows come from :func:`toolkit.methods.lmcor.scoring.oracle_selection`.
    """
    if not candidates or not references:
        raise ValueError("oracle_select needs candidates and references")
    utility = utility or _sentence_chrf
    scores = [max(utility(c, r) for r in references) for c in candidates]
    return max(range(len(candidates)), key=lambda i: (scores[i], -i))


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

    One oracle row per metric of the task (:func:`toolkit.methods.lmcor.scoring.oracle_selection`, scored with the same
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
