"""Fit LMCor corrector inputs into the student's token budget without losing the last candidates.

The students truncate an over-long input on the right (:func:`toolkit.models.students.tokenize_pairs`), which for
``source || c1 || c2 || ... || ck`` silently deletes the *last candidates* whole: the corrector then trains and is
tested on fewer than k candidates, and the order-shuffled training examples lose different ones each time. Instead
:class:`BudgetedFormat` cuts **the source and every candidate fairly** before the students ever see the text:
a max-min fair split of the token budget (segments shorter than their share stay whole, the rest share what is
left equally), so every candidate keeps at least its head. It counts how many inputs it had to cut, so the recipe
can log and report it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from toolkit.methods.lmcor.formats import CorrectorFormat, clean_text

logger = logging.getLogger(__name__)

__all__ = ["BudgetedFormat", "fair_shares"]


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
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for pos, i in enumerate(order):
        caps[i] = min(lengths[i], remaining // (len(order) - pos))
        remaining -= caps[i]
    return caps


class BudgetedFormat:
    """A :class:`~toolkit.methods.lmcor.formats.CorrectorFormat` whose inputs fit ``max_source_len`` tokens of the student.

    Call it like the format, ``fmt(source, candidates) -> str``, so it drops into
    :func:`~toolkit.methods.lmcor.formats.build_training_examples` and :func:`~toolkit.methods.lmcor.formats.build_eval_inputs`
    unchanged.

    Attributes:
        num_inputs: inputs rendered so far.
        num_cut: of those, how many were over budget and had their source / candidates cut.
    """

    _MAX_ROUNDS = 6

    def __init__(self, fmt: CorrectorFormat, tokenizer: Any, max_source_len: int, *, is_seq2seq: bool = False):
        """Wrap ``fmt``.

        Args:
            fmt: the corrector input format.
            tokenizer: the student's tokenizer (the budget is in its tokens).
            max_source_len: the student's input cap (``ModelArguments.max_source_len``).
            is_seq2seq: encoder-decoder students count the special tokens (EOS) the tokenizer appends against the
                cap; causal students cap the body only (the prompt template comes on top).
        """
        self.fmt, self.tokenizer = fmt, tokenizer
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
        for _ in range(self._MAX_ROUNDS):
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
        cut, n = self.num_cut, self.num_inputs
        if cut:
            logger.warning(
                "%d / %d %s corrector inputs were longer than %d tokens: source and candidates cut fairly to fit",
                cut,
                n,
                what,
                self.budget,
            )
        self.num_cut = self.num_inputs = 0
        return cut
