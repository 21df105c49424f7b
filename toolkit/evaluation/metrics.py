"""Evaluation metrics for every task family.

Scales: generation metrics (BLEU, chrF, TER, GLEU, ROUGE) are on 0-100, as the papers report them;
classification / tagging metrics (accuracy, macro-F1, exact match, slot F1) are fractions in [0, 1]. Slot F1 is
seqeval's span F1 (:func:`slot_f1`).

References are per row: ``refs[i]`` is the list of references of hypothesis ``i`` and may have any
length >= 1 (E2E has 1-N references per MR). sacrebleu wants the transpose, one *stream* per
reference position; we pad short rows with ``None``, which sacrebleu's ``_cache_references`` drops
before extracting n-grams and lengths, so a padded row is scored against exactly its own references
(the signature then says ``nrefs:var``). An empty string would NOT be dropped: sacrebleu would score
against it as a real (empty) reference and it would affect BLEU's closest reference length.

sacrebleu and rouge_score are called directly (``evaluate.load`` needs the Hub). GLEU's statistics live in
:mod:`toolkit.evaluation.gleu`; this module turns them into a :class:`MetricResult`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric
from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

from toolkit.evaluation.gleu import (
    GLEU_ORDER,
    OFFICIAL_ITERATIONS,
    STATS_WIDTH,
    effective_iterations,
    gleu_from_stats,
    gleu_from_totals,
    official_draws,
    reference_stats,
    sampled_totals,
)

logger = logging.getLogger(__name__)


@dataclass
class MetricResult:
    """A corpus-level score with the exact settings that produced it.

    Attributes:
        name: short key, e.g. ``"bleu"``.
        score: the corpus score (0-100 for generation metrics).
        signature: reproducibility string, e.g. ``BLEU|nrefs:4|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``.
        details: metric-specific extras (n-gram precisions, brevity penalty, ...).
    """

    name: str
    score: float
    signature: str
    details: dict[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.score)


# ----------------------------------------------------------------------------------------- helpers


def check_same_length(first: Sequence, second: Sequence, what: str = "predictions and references") -> None:
    """Raise when two aligned sequences differ in length or are empty (``what`` names them in the message)."""
    if len(first) != len(second):
        raise ValueError(f"{what} differ in length: {len(first)} vs {len(second)}")
    if len(first) == 0:
        raise ValueError(f"cannot score empty {what}")


def normalize_refs(refs: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Per-row reference lists; a bare string row means one reference."""
    out = []
    for index, row in enumerate(refs):
        row_list = [row] if isinstance(row, str) else list(row)
        if not row_list:
            raise ValueError(f"row {index} has no reference")
        if not all(isinstance(r, str) for r in row_list):
            raise TypeError(f"row {index}: references must be strings, got {row_list!r}")
        out.append(row_list)
    return out


def ref_streams(refs: list[list[str]]) -> list[list[str | None]]:
    """Transpose per-row references into sacrebleu streams, padding ragged rows with ``None``."""
    width = max(len(r) for r in refs)
    return [[row[k] if k < len(row) else None for row in refs] for k in range(width)]


def _sacrebleu_corpus(metric, key: str, hyps: Sequence[str], refs) -> MetricResult:
    rows = normalize_refs(refs)
    check_same_length(hyps, rows, "hypotheses and references")
    score = metric.corpus_score(list(hyps), ref_streams(rows))
    signature = f"{score.name}|{metric.get_signature()}"
    details: dict[str, Any] = {}
    for attr in ("precisions", "bp", "sys_len", "ref_len", "char_order", "word_order", "num_edits", "ref_length"):
        if hasattr(score, attr):
            details[attr] = getattr(score, attr)
    return MetricResult(key, float(score.score), signature, details)


def sentence_statistics(metric: Metric, hyps: Sequence[str], refs: Sequence[str | Sequence[str]]) -> list[list]:
    """sacrebleu's sufficient statistics of each hypothesis (one row each), as its corpus score sums them.

    The one place that reaches into sacrebleu's statistics API (``_extract_corpus_statistics``, which sacrebleu's
    own significance tests use): selections and bootstrap resampling add rows' statistics instead of rescoring text.
    """
    rows = normalize_refs(refs)
    check_same_length(hyps, rows, "hypotheses and references")
    return list(metric._extract_corpus_statistics(list(hyps), ref_streams(rows)))


def score_from_statistics(metric: Metric, stats: Sequence[float]) -> float:
    """The corpus score of summed :func:`sentence_statistics` (sacrebleu's ``_compute_score_from_stats``)."""
    return float(metric._compute_score_from_stats(list(stats)).score)


# ----------------------------------------------------------------------------------------- sacrebleu


def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], **kwargs: Any) -> MetricResult:
    """Corpus BLEU (sacrebleu; defaults: 13a tokenization, mixed case, exp smoothing).

    Args:
        hyps: one hypothesis per row.
        refs: per-row reference lists (ragged allowed; a bare string is one reference).
        **kwargs: passed to ``sacrebleu.metrics.BLEU`` (``tokenize``, ``lowercase`` ...).
    """
    return _sacrebleu_corpus(BLEU(**kwargs), "bleu", hyps, refs)


def chrf(hyps: Sequence[str], refs: Sequence[Sequence[str]], **kwargs: Any) -> MetricResult:
    """Corpus chrF (sacrebleu; ``word_order=2`` gives chrF++). Arguments as in :func:`bleu`."""
    return _sacrebleu_corpus(CHRF(**kwargs), "chrf", hyps, refs)


def ter(hyps: Sequence[str], refs: Sequence[Sequence[str]], **kwargs: Any) -> MetricResult:
    """Corpus TER (sacrebleu; lower is better; case-insensitive by default). Arguments as in :func:`bleu`."""
    return _sacrebleu_corpus(TER(**kwargs), "ter", hyps, refs)


def sentence_bleu(hyp: str, refs: str | Sequence[str]) -> float:
    """Sentence BLEU (sacrebleu with effective order, so short sentences are not zeroed)."""
    return float(BLEU(effective_order=True).sentence_score(hyp, normalize_refs([refs])[0]).score)


def sentence_chrf(hyp: str, ref: str | Sequence[str]) -> float:
    """Sentence chrF (sacrebleu defaults: character 6-grams, beta 2); max over references when several."""
    return float(CHRF().sentence_score(hyp, normalize_refs([ref])[0]).score)


# ----------------------------------------------------------------------------------------- GLEU


def gleu(
    sources: Sequence[str],
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    *,
    num_iterations: int | None = OFFICIAL_ITERATIONS,
) -> MetricResult:
    """JFLEG's corpus GLEU on 0-100, by default exactly the official ``gleu.py`` (see :mod:`toolkit.evaluation.gleu`).

    Args:
        sources: the uncorrected input sentences.
        hyps: system corrections.
        refs: per-row reference corrections (ragged allowed).
        num_iterations: number of official random reference draws (default 500, the official setting); ``None``
            for the deterministic expected-statistics variant.

    Returns:
        ``MetricResult("gleu", 100 * GLEU, signature)``; with sampling, ``details["std"]`` is the standard
        deviation over iterations (0-100 scale) and ``details["iterations"]`` the number of draws.
    """
    rows = normalize_refs(refs)
    check_same_length(hyps, rows, "hypotheses and references")
    check_same_length(sources, hyps, "sources and hypotheses")
    per_ref = [reference_stats(src, hyp, tuple(row)) for src, hyp, row in zip(sources, hyps, rows)]
    counts = tuple(len(r) for r in rows)
    nrefs = str(counts[0]) if len(set(counts)) == 1 else "var"
    prefix = f"GLEU|nrefs:{nrefs}|n:{GLEU_ORDER}|tok:whitespace"
    if num_iterations is None:
        total = [0.0] * STATS_WIDTH
        for stats in per_ref:
            for column in range(STATS_WIDTH):
                total[column] += sum(st[column] for st in stats) / len(stats)
        return MetricResult("gleu", 100.0 * gleu_from_stats(total), f"{prefix}|refs:expected-stats", {"stats": total})
    iterations = effective_iterations(counts, num_iterations)
    scores = 100.0 * gleu_from_totals(sampled_totals(per_ref, official_draws(counts, iterations)))
    signature = f"{prefix}|refs:sampled-{iterations}|seed:j*101"
    details = {"std": float(np.std(scores)), "iterations": iterations}
    return MetricResult("gleu", float(np.mean(scores)), signature, details)


# ----------------------------------------------------------------------------------------- ROUGE


def rouge(hyps: Sequence[str], refs: Sequence[str | Sequence[str]], *, use_stemmer: bool = True) -> dict[str, float]:
    """ROUGE-1/2/L F-measure (rouge-score, Porter stemming), 0-100.

    Multi-reference rows take, per ROUGE type, the reference with the best F-measure
    (``RougeScorer.score_multi``); scores are then averaged over rows. rouge-score's default tokenizer
    lowercases and keeps only ``[a-z0-9]`` tokens, so it is meant for English.

    Returns:
        ``{"rouge1": ..., "rouge2": ..., "rougeL": ...}``.
    """
    rows = normalize_refs(refs)
    check_same_length(hyps, rows, "hypotheses and references")
    keys = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=use_stemmer)
    totals = dict.fromkeys(keys, 0.0)
    for hyp, row in zip(hyps, rows):
        scores = scorer.score_multi(row, hyp)
        for key in keys:
            totals[key] += scores[key].fmeasure
    return {k: 100.0 * v / len(rows) for k, v in totals.items()}


# ----------------------------------------------------------------------------------------- classification


def accuracy(preds: Sequence[Hashable], golds: Sequence[Hashable]) -> float:
    """Fraction of rows where ``pred == gold``."""
    check_same_length(preds, golds)
    return sum(p == g for p, g in zip(preds, golds)) / len(golds)


def macro_f1(preds: Sequence[Hashable], golds: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> float:
    """Unweighted mean of per-class F1 (sklearn's ``f1_score(average="macro")`` semantics).

    Args:
        preds: predicted labels; values outside the label set (e.g. unparseable generations, ``None``)
            are simply wrong: a false negative for the gold class, a false positive for no class.
        golds: gold labels.
        labels: the classes to average over; default: the classes occurring in ``golds``. A listed class
            with no gold and no prediction gets F1 = 0 (sklearn's ``zero_division=0``).

    Raises:
        ValueError: a gold label is not in ``labels``.
    """
    check_same_length(preds, golds)
    classes = list(dict.fromkeys(golds)) if labels is None else list(dict.fromkeys(labels))
    class_set = set(classes)
    unknown = {g for g in golds if g not in class_set}
    if unknown:
        raise ValueError(f"gold labels not in `labels`: {sorted(map(str, unknown))}")
    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    for pred, gold in zip(preds, golds):
        if pred == gold:
            tp[gold] += 1
        else:
            fn[gold] += 1
            if pred in class_set:
                fp[pred] += 1
    f1s = []
    for label in classes:
        denom = 2 * tp[label] + fp[label] + fn[label]
        f1s.append(2 * tp[label] / denom if denom else 0.0)
    return sum(f1s) / len(f1s)


def _normalize_answer(text: str, ignore_case: bool) -> str:
    text = " ".join(str(text).split())
    return text.lower() if ignore_case else text


def exact_match(preds: Sequence[str], golds: Sequence[str | Sequence[str]], *, ignore_case: bool = False) -> float:
    """Fraction of predictions equal to the gold (or to any of its accepted answers).

    Whitespace is normalized (stripped, runs collapsed); ``ignore_case`` also lowercases.
    """
    check_same_length(preds, golds)
    hits = 0
    for pred, gold in zip(preds, golds):
        accepted = [gold] if isinstance(gold, str) else list(gold)
        norm = _normalize_answer(pred, ignore_case) if pred is not None else None
        hits += norm is not None and any(norm == _normalize_answer(a, ignore_case) for a in accepted)
    return hits / len(golds)


# ----------------------------------------------------------------------------------------- slot F1


def _split_tag(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BI":
        return tag[0], tag[2:]
    raise ValueError(f"not a BIO tag: {tag!r}")


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Spans ``(type, start, end_exclusive)`` of a BIO sequence, with conlleval's semantics (seqeval's chunks).

    A span starts at ``B-X``, or at ``I-X`` whose predecessor is not part of an ``X`` span (``O``, or a
    different type), and ends before ``O``, ``B-*`` or an ``I-Y`` of another type.

    Raises:
        ValueError: a tag that is neither ``O`` nor ``B-X``/``I-X`` (seqeval would read it as some chunk).
    """
    for tag in tags:
        _split_tag(tag)
    return [(typ, start, end + 1) for typ, start, end in get_entities(list(tags))]


def slot_f1(pred_tags: Sequence[Sequence[str]], gold_tags: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Span-level micro precision / recall / F1 over BIO sequences: seqeval's (conlleval semantics), plus counts.

    A predicted span counts only if type, start and end all match a gold span. What seqeval does not do is done
    here: malformed *predicted* tags (e.g. from a badly parsed generation) are read as ``O`` and counted in
    ``n_invalid_tags`` (seqeval would read ``"garbage"`` as a chunk); malformed gold tags raise; a predicted
    sequence of a different length than its gold one is scored as is (padded with ``O``: spans past the gold end
    are false positives; seqeval would refuse the pair).

    Returns:
        ``{"precision", "recall", "f1", "n_pred", "n_gold", "n_correct", "n_invalid_tags",
        "per_type": {type: {"precision", "recall", "f1", "n_pred", "n_gold", "n_correct"}}}``
        (fractions in [0, 1]; 0 where undefined).
    """
    check_same_length(pred_tags, gold_tags, "predicted and gold tag sequences")
    n_invalid = 0
    preds, golds = [], []
    counts = {"n_pred": Counter(), "n_gold": Counter(), "n_correct": Counter()}
    for pred, gold in zip(pred_tags, gold_tags):
        clean = []
        for tag in pred:
            try:
                _split_tag(tag)
                clean.append(tag)
            except ValueError:
                n_invalid += 1
                clean.append("O")
        length = max(len(clean), len(gold))
        preds.append(clean + ["O"] * (length - len(clean)))
        golds.append(list(gold) + ["O"] * (length - len(gold)))
        p_spans, g_spans = set(bio_spans(preds[-1])), set(bio_spans(golds[-1]))
        counts["n_pred"].update(s[0] for s in p_spans)
        counts["n_gold"].update(s[0] for s in g_spans)
        counts["n_correct"].update(s[0] for s in p_spans & g_spans)
    if n_invalid:
        logger.warning("slot_f1: %d predicted tags were not BIO and were read as 'O'", n_invalid)
    precision, recall, f1, _ = precision_recall_fscore_support(golds, preds, average="micro", zero_division=0)
    result: dict[str, Any] = {"precision": float(precision), "recall": float(recall), "f1": float(f1)}
    result |= {key: sum(c.values()) for key, c in counts.items()}
    result["n_invalid_tags"] = n_invalid
    types = sorted(set(counts["n_pred"]) | set(counts["n_gold"]))
    per_type = precision_recall_fscore_support(golds, preds, average=None, zero_division=0)[:3] if types else ()
    result["per_type"] = {
        typ: {"precision": float(per_type[0][i]), "recall": float(per_type[1][i]), "f1": float(per_type[2][i])}
        | {key: c[typ] for key, c in counts.items()}
        for i, typ in enumerate(types)
    }
    return result
