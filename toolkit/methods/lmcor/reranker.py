"""The learned reranker: LMCor's ranking baseline, the same student on the same inputs trained to *pick* a candidate.

Vernikos et al. 2023 compare the corrector with a ranker trained on the same data. Here the ranker is the corrector's
own set-up with one change, so the comparison isolates "rewrite" against "choose":

* **training target**: instead of the reference, the example's candidate closest to that reference by sentence chrF
  (:func:`closest_candidate`; the utility of the MBR and per-sentence oracle picks in
  :mod:`toolkit.methods.lmcor.selectors`, used for every task: sentence-level BLEU/GLEU are too noisy on one
  sentence). The input (source and k candidates, same subsets and orders) is the corrector's, unchanged.
* **test output**: the student generates text as the corrector does; the text is mapped to one of the row's
  candidates (:func:`map_to_candidate`): the candidate itself when the generation is exactly one (after whitespace
  normalisation), else the candidate with the highest sentence chrF to the generation. How many rows needed the
  chrF fallback is recorded, so the table row is always a pure selection among the candidates.

Generating the chosen text (rather than an index, or scoring every candidate's log-likelihood) keeps the student's
training and decoding identical to the corrector's: one generate call per row, no k extra forward passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolkit.methods.lmcor.formats import clean_text
from toolkit.methods.lmcor.selectors import oracle_select

__all__ = ["closest_candidate", "map_to_candidate", "map_to_candidates"]


def closest_candidate(candidates: Sequence[str], reference: str) -> str:
    """The reranker's training target: the candidate with the highest sentence chrF to ``reference`` (first on ties).

    Args:
        candidates: the candidates of one training example, as the student reads them.
        reference: the example's reference.
    """
    return candidates[oracle_select(candidates, [reference])]


def map_to_candidate(generated: str, candidates: Sequence[str]) -> tuple[str, bool]:
    """``(candidate, exact)``: the candidate the generation names, and whether it named one exactly.

    Args:
        generated: the student's output for the row.
        candidates: the row's test candidates (whitespace-normalised, as the student read them).

    Returns:
        The candidate equal to the whitespace-normalised generation (``exact=True``), else the candidate with the
        highest sentence chrF to it (``exact=False``; an empty generation maps to the first candidate).
    """
    if not candidates:
        raise ValueError("map_to_candidate needs at least one candidate")
    text = clean_text(generated)
    for candidate in candidates:
        if clean_text(candidate) == text:
            return candidate, True
    if not text:
        return candidates[0], False
    return candidates[oracle_select(candidates, [text])], False


def map_to_candidates(
    generated: Sequence[str], candidates: Sequence[Sequence[str]]
) -> tuple[list[str], dict[str, Any]]:
    """Map every row's generation to one of its candidates; returns ``(outputs, summary)``.

    ``summary`` is ``{"rows", "exact", "mapped_by_chrf", "mapped_by_chrf_share"}``: how often the generation was not
    exactly a candidate and the chrF fallback chose for it.
    """
    if len(generated) != len(candidates):
        raise ValueError(f"{len(generated)} generations for {len(candidates)} candidate lists")
    mapped = [map_to_candidate(text, row) for text, row in zip(generated, candidates)]
    outputs = [candidate for candidate, _ in mapped]
    exact = sum(is_exact for _, is_exact in mapped)
    fallback = len(mapped) - exact
    summary = {
        "rows": len(mapped),
        "exact": exact,
        "mapped_by_chrf": fallback,
        "mapped_by_chrf_share": fallback / len(mapped) if mapped else 0.0,
    }
    return outputs, summary
