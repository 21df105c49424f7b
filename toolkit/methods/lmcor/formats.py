"""What the corrector reads: the input format, the candidates it sees, its training examples, the token budget.

Reference: Vernikos et al. 2023, "Small Language Models Improve Giants by Rewriting Their Outputs". The
corrector is trained on ``(input + candidates) -> reference`` and, at test time, reads candidates from any LLM
(plug-and-play). This module holds:

* **the corrector input format** (:class:`CorrectorFormat`): the paper's
  ``source: x <extra_id_0> candidates: c1 <extra_id_0> c2 ...`` with a configurable separator; candidates are
  whitespace-normalised first (the paper's code kept trailing newlines in candidates),
* **the token budget** (:class:`BudgetedFormat`): the students truncate an over-long input on the right, which for
  ``source || c1 || ... || ck`` silently deletes the *last candidates* whole (the corrector then trains and is
  tested on fewer than k candidates, and the shuffled training examples lose different ones each time). Instead the
  source and every candidate are cut fairly before the students see the text: a max-min fair split of the budget
  (:func:`fair_shares`), so every candidate keeps at least its head; the cut inputs are counted for the report,
* **training examples** (:func:`build_training_examples`): k candidates, optional order shuffling as
  augmentation, the single-candidate ablation, system filtering for held-out-system tests, and multi-reference
  data expanded to *one example per reference* (every reference is a valid rewrite; picking one at random would
  throw data away, and concatenating them is not a target),
* **the teacher prompts** (:data:`GEC_TEMPLATE`, :data:`D2T_TEMPLATE`) the candidates job sends.

Candidate rows are ``{"id", "source", "references": [...], "candidates": [...], "systems": [...]}`` (``systems``
names who produced each candidate: a WMT system; rows of the candidates job name the teacher's ``greedy``/``sample``
kind in ``candidate_kinds`` instead, see :func:`candidate_systems`).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

WHITESPACE = re.compile(r"\s+")
GEC_TEMPLATE = {
    "instruction": "Correct the grammar and spelling mistakes in the sentence. Change as little as possible.",
    "input_template": "Sentence: {source}",
    "output_template": "Corrected: {target}",
}
D2T_TEMPLATE = {
    "instruction": "Write one fluent restaurant description that mentions every attribute.",
    "input_template": "Attributes: {source}",
    "output_template": "Description: {target}",
}

__all__ = [
    "D2T_TEMPLATE",
    "GEC_TEMPLATE",
    "BudgetedFormat",
    "CorrectorFormat",
    "build_eval_inputs",
    "build_training_examples",
    "candidate_systems",
    "clean_text",
    "fair_shares",
    "pick_candidates",
]


def clean_text(text: str) -> str:
    """Collapse every whitespace run (newlines, tabs) into one space and strip the ends."""
    return WHITESPACE.sub(" ", text).strip()


@dataclass
class CorrectorFormat:
    """How the corrector sees ``(source, candidates)``.

    Attributes:
        separator: placed between the source block and each candidate. The paper (T5) uses ``<extra_id_0>``,
            a sentinel the T5 vocabulary already has; for a causal LM a short plain marker such as ``" || "``
            tokenizes into fewer pieces.
        source_prefix: text before the source.
        candidates_prefix: text before the first candidate.
    """

    separator: str = " <extra_id_0> "
    source_prefix: str = "source: "
    candidates_prefix: str = "candidates: "

    def __post_init__(self):
        if not self.separator.strip():
            raise ValueError("separator must contain a visible marker (whitespace alone cannot delimit candidates)")

    def __call__(self, source: str, candidates: Sequence[str]) -> str:
        """Render one corrector input; whitespace inside the source and candidates is normalised."""
        if not candidates:
            raise ValueError("the corrector needs at least one candidate")
        sep = self.separator
        parts = [f"{self.source_prefix}{clean_text(source)}", f"{self.candidates_prefix}{clean_text(candidates[0])}"]
        parts += [clean_text(c) for c in candidates[1:]]
        return sep.join(parts)


def candidate_systems(row: Mapping[str, Any]) -> list[str] | None:
    """Who produced each candidate: ``systems`` (WMT systems) or, in the candidates job's rows, ``candidate_kinds``."""
    names = row.get("systems")
    return row.get("candidate_kinds") if names is None else names


def pick_candidates(
    row: Mapping[str, Any],
    *,
    k: int,
    systems: Sequence[str] | None = None,
    rng: random.Random | None = None,
    shuffle: bool = False,
) -> list[str]:
    """The k candidates the corrector sees for ``row``.

    Args:
        row: a pool row.
        k: how many candidates (fewer if the row has fewer).
        systems: keep only candidates produced by these systems (held-out-system experiments).
        rng: when given and more than k candidates are allowed, a random k-subset is drawn (augmentation);
            without it the first k are used, so the greedy candidate (first in teacher pools) is always in.
        shuffle: shuffle the order of the chosen candidates (needs ``rng``), so the corrector does not learn a
            position prior such as "the first candidate is best".

    Returns:
        Whitespace-normalised candidates, empty ones dropped.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cands = list(row["candidates"])
    if systems is not None:
        allowed = set(systems)
        names = candidate_systems(row) or []
        if len(names) != len(cands):
            raise ValueError(f"row {row.get('id')}: filtering by system needs one system name per candidate")
        cands = [c for c, s in zip(cands, names) if s in allowed]
    cands = [clean_text(c) for c in cands]
    cands = [c for c in cands if c]
    if rng is not None and len(cands) > k:
        chosen = sorted(rng.sample(range(len(cands)), k))
        cands = [cands[i] for i in chosen]
    else:
        cands = cands[:k]
    if shuffle:
        if rng is None:
            raise ValueError("shuffle=True needs an rng")
        rng.shuffle(cands)
    return cands


def build_training_examples(
    rows: Iterable[Mapping[str, Any]],
    fmt: CorrectorFormat,
    *,
    k: int,
    systems: Sequence[str] | None = None,
    shuffle: bool = False,
    augment: int = 1,
    seed: int = 0,
    multi_reference: bool = True,
    subset: bool = True,
    target_for: Callable[[Sequence[str], str], str] | None = None,
) -> list[dict[str, str]]:
    """``{"id", "source", "target"}`` examples for the corrector.

    Args:
        rows: pool rows.
        fmt: the input format.
        k: candidates per example (``k=1`` with ``subset=False`` is the single-candidate ablation: the greedy one).
        systems: only candidates from these systems (training systems in the held-out-system setup).
        shuffle: shuffle candidate order in each example (augmentation).
        augment: copies of each (row, reference) with independently drawn candidate subsets / orders.
        seed: seeds the subset / order draws.
        multi_reference: one example per reference (default); ``False`` keeps only the first reference.
        subset: draw a random k-subset when more than k candidates are available; ``False`` takes the first k.
        target_for: ``(the example's candidates, reference) -> target``; default the reference itself (the
            corrector). The learned reranker passes the candidate closest to the reference.

    Returns:
        The examples; rows without any usable candidate are skipped (with a warning count).
    """
    if augment < 1:
        raise ValueError(f"augment must be >= 1, got {augment}")
    rng = random.Random(seed)
    out, skipped = [], 0
    for row in rows:
        refs = [clean_text(r) for r in row["references"] if r and r.strip()]
        if not multi_reference:
            refs = refs[:1]
        for ref_index, ref in enumerate(refs):
            for copy in range(augment):
                # The rng draws a subset only when asked: with subset=False (the single-candidate ablation) the
                # example must hold the same first-k candidates evaluation uses, shuffled or not.
                cands = pick_candidates(row, k=k, systems=systems, rng=rng if subset else None)
                if shuffle:
                    rng.shuffle(cands)
                if not cands:
                    skipped += 1
                    continue
                example_id = f"{row.get('id', '')}/ref{ref_index}/aug{copy}"
                target = target_for(cands, ref) if target_for else ref
                out.append({"id": example_id, "source": fmt(row["source"], cands), "target": target})
    if skipped:
        logger.warning("Skipped %d examples with no candidate from the allowed systems", skipped)
    return out


def build_eval_inputs(
    rows: Iterable[Mapping[str, Any]], fmt: CorrectorFormat, *, k: int, systems: Sequence[str] | None = None
) -> list[str]:
    """Deterministic corrector inputs for evaluation (first k allowed candidates, pool order)."""
    return [fmt(row["source"], pick_candidates(row, k=k, systems=systems)) for row in rows]


# --------------------------------------------------------------------------------------------------------------
# The token budget: cut the source and every candidate fairly
# --------------------------------------------------------------------------------------------------------------
def fair_shares(lengths: Sequence[int], budget: int) -> list[int]:
    """Max-min fair caps: each segment gets ``min(length, share)``, unused share flows to the longer ones.

    Args:
        lengths: token length of each segment.
        budget: total tokens available (negative counts as 0).

    Returns:
        One cap per segment, summing to ``min(budget, sum(lengths))``.
    """
    caps = [0] * len(lengths)
    remaining = max(0, budget)
    shortest_first = sorted(range(len(lengths)), key=lambda segment: lengths[segment])
    for position, segment in enumerate(shortest_first):
        caps[segment] = min(lengths[segment], remaining // (len(shortest_first) - position))
        remaining -= caps[segment]
    return caps


class BudgetedFormat:
    """A :class:`CorrectorFormat` whose inputs fit ``max_source_len`` tokens of the student.

    Call it like the format, ``fmt(source, candidates) -> str``, so it drops into :func:`build_training_examples`
    and :func:`build_eval_inputs` unchanged.

    Attributes:
        num_inputs: inputs rendered so far.
        num_cut: of those, how many were over budget and had their source / candidates cut.
    """

    MAX_ROUNDS = 6  # re-measure rounds: token merges across a boundary can shift the count by one or two

    def __init__(self, fmt: CorrectorFormat, tokenizer: Any, max_source_len: int, *, is_seq2seq: bool = False):
        """Wrap ``fmt``.

        Args:
            fmt: the corrector input format.
            tokenizer: the student's tokenizer (the budget is in its tokens).
            max_source_len: the student's input cap in tokens.
            is_seq2seq: encoder-decoder students count the special tokens (EOS) the tokenizer appends against the
                cap; causal students cap the body only (the prompt template comes on top).
        """
        self.fmt = fmt
        self.tokenizer = tokenizer
        special = tokenizer.num_special_tokens_to_add() if is_seq2seq else 0
        self.budget = max_source_len - special
        if self.budget < 1:
            raise ValueError(f"max_source_len={max_source_len} leaves no room after {special} special tokens")
        self.num_inputs = 0
        self.num_cut = 0

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _head(self, text: str, n: int) -> str:
        """The first ``n`` tokens of ``text``, as text (a clean character cut with a fast tokenizer's offsets)."""
        if n <= 0:
            return ""
        if getattr(self.tokenizer, "is_fast", False):
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            return text if n >= len(offsets) else text[: offsets[n - 1][1]]
        return self.tokenizer.decode(self._ids(text)[:n], skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def __call__(self, source: str, candidates: Sequence[str]) -> str:
        self.num_inputs += 1
        text = self.fmt(source, candidates)
        total = len(self._ids(text))
        if total <= self.budget:
            return text
        self.num_cut += 1
        segments = [clean_text(source), *(clean_text(c) for c in candidates)]
        lengths = [len(self._ids(s)) for s in segments]
        # Prefixes and separators cost roughly what is left after the segments; re-measure and shrink until it fits
        # (token merges across a boundary can make the estimate off by a token or two).
        available = self.budget - (total - sum(lengths))
        for _ in range(self.MAX_ROUNDS):
            caps = fair_shares(lengths, available)
            parts = [self._head(s, c) for s, c in zip(segments, caps)]
            text = self.fmt(parts[0], parts[1:])
            excess = len(self._ids(text)) - self.budget
            if excess <= 0:
                break
            available -= excess
        return text

    def log_cut(self, what: str) -> int:
        """Log (warning) how many ``what`` inputs were cut since the last call; returns that count and resets."""
        cut = self.num_cut
        if cut:
            logger.warning(
                "%d / %d %s corrector inputs were longer than %d tokens: source and candidates cut fairly to fit",
                cut,
                self.num_inputs,
                what,
                self.budget,
            )
        self.num_cut = self.num_inputs = 0
        return cut
