"""Evaluation metrics for every task family.

Scales: generation metrics (BLEU, chrF, TER, GLEU, ROUGE) are on 0-100, as the papers report them;
classification / tagging metrics (accuracy, macro-F1, exact match, slot F1) are fractions in [0, 1].

References are per row: ``refs[i]`` is the list of references of hypothesis ``i`` and may have any
length >= 1 (E2E has 1-N references per MR). sacrebleu wants the transpose, one *stream* per
reference position; we pad short rows with ``None``, which sacrebleu's ``_cache_references`` drops
before extracting n-grams and lengths, so a padded row is scored against exactly its own references
(the signature then says ``nrefs:var``). An empty string would NOT be dropped: sacrebleu would score
against it as a real (empty) reference and it would affect BLEU's closest reference length.

sacrebleu and rouge_score are imported inside the functions (``evaluate.load`` needs the Hub, so the
libraries are called directly).
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

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


def _check_same_length(a: Sequence, b: Sequence, what: str = "predictions and references") -> None:
    if len(a) != len(b):
        raise ValueError(f"{what} differ in length: {len(a)} vs {len(b)}")
    if len(a) == 0:
        raise ValueError(f"cannot score empty {what}")


def _normalize_refs(refs: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Per-row reference lists; a bare string row means one reference."""
    out = []
    for i, row in enumerate(refs):
        row_list = [row] if isinstance(row, str) else list(row)
        if not row_list:
            raise ValueError(f"row {i} has no reference")
        if not all(isinstance(r, str) for r in row_list):
            raise TypeError(f"row {i}: references must be strings, got {row_list!r}")
        out.append(row_list)
    return out


def _ref_streams(refs: list[list[str]]) -> list[list[str | None]]:
    """Transpose per-row references into sacrebleu streams, padding ragged rows with ``None``."""
    width = max(len(r) for r in refs)
    return [[row[k] if k < len(row) else None for row in refs] for k in range(width)]


def _sacrebleu_corpus(metric, key: str, hyps: Sequence[str], refs) -> MetricResult:
    rows = _normalize_refs(refs)
    _check_same_length(hyps, rows, "hypotheses and references")
    score = metric.corpus_score(list(hyps), _ref_streams(rows))
    signature = f"{score.name}|{metric.get_signature()}"
    details: dict[str, Any] = {}
    for attr in ("precisions", "bp", "sys_len", "ref_len", "char_order", "word_order", "num_edits", "ref_length"):
        if hasattr(score, attr):
            details[attr] = getattr(score, attr)
    return MetricResult(key, float(score.score), signature, details)


# ----------------------------------------------------------------------------------------- sacrebleu


def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], **kwargs: Any) -> MetricResult:
    """Corpus BLEU (sacrebleu; defaults: 13a tokenization, mixed case, exp smoothing).

    Args:
        hyps: one hypothesis per row.
        refs: per-row reference lists (ragged allowed; a bare string is one reference).
        **kwargs: passed to ``sacrebleu.metrics.BLEU`` (``tokenize``, ``lowercase`` ...).
    """
    from sacrebleu.metrics import BLEU

    return _sacrebleu_corpus(BLEU(**kwargs), "bleu", hyps, refs)


def chrf(hyps: Sequence[str], refs: Sequence[Sequence[str]], **kwargs: Any) -> MetricResult:
    """Corpus chrF (sacrebleu; ``word_order=2`` gives chrF++). Arguments as in :func:`bleu`."""
    from sacrebleu.metrics import CHRF

    return _sacrebleu_corpus(CHRF(**kwargs), "chrf", hyps, refs)


def ter(hyps: Sequence[str], refs: Sequence[Sequence[str]], **kwargs: Any) -> MetricResult:
    """Corpus TER (sacrebleu; lower is better; case-insensitive by default). Arguments as in :func:`bleu`."""
    from sacrebleu.metrics import TER

    return _sacrebleu_corpus(TER(**kwargs), "ter", hyps, refs)


def sentence_bleu(hyp: str, refs: str | Sequence[str]) -> float:
    """Sentence BLEU (sacrebleu with effective order, so short sentences are not zeroed)."""
    from sacrebleu.metrics import BLEU

    return float(BLEU(effective_order=True).sentence_score(hyp, _normalize_refs([refs])[0]).score)


def sentence_chrf(hyp: str, ref: str | Sequence[str]) -> float:
    """Sentence chrF (sacrebleu defaults: character 6-grams, beta 2); max over references when several."""
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(hyp, _normalize_refs([ref])[0]).score)


# ----------------------------------------------------------------------------------------- GLEU

GLEU_ORDER = 4


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) + 1 - n))


def _gleu_stats(hyp: list[str], src: list[str], ref: list[str]) -> list[float]:
    """Sentence statistics against ONE reference, exactly as the official ``gleu.py`` ``gleu_stats``.

    ``[hyp_len, ref_len, m_1, d_1, ..., m_4, d_4]`` with
    ``m_n = max(|H_n & R_n| - |H_n & (S_n \\ R_n)|, 0)`` (clipped counts; ``S_n \\ R_n`` removes every
    source n-gram *type* that occurs in the reference, keeping the source counts of the rest) and
    ``d_n = max(len(hyp) + 1 - n, 0)``.
    """
    stats: list[float] = [len(hyp), len(ref)]
    for n in range(1, GLEU_ORDER + 1):
        h, s, r = _ngrams(hyp, n), _ngrams(src, n), _ngrams(ref, n)
        s_not_r = Counter({g: c for g, c in s.items() if g not in r})
        stats.append(max(sum((h & r).values()) - sum((h & s_not_r).values()), 0))
        stats.append(max(len(hyp) + 1 - n, 0))
    return stats


def _gleu_from_stats(stats: Sequence[float]) -> float:
    """GLEU in [0, 1] from summed statistics (official ``GLEU.gleu`` without smoothing)."""
    if any(x == 0 for x in stats):
        return 0.0
    c, r = stats[0], stats[1]
    log_prec = sum(math.log(m / d) for m, d in zip(stats[2::2], stats[3::2])) / GLEU_ORDER
    return math.exp(min(0.0, 1.0 - r / c) + log_prec)


def gleu(
    sources: Sequence[str],
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    *,
    num_iterations: int | None = None,
) -> MetricResult:
    """JFLEG's GLEU ("GLEU without tuning", Napoles et al. 2015, updated 2016), corpus level, 0-100.

    Text is whitespace-tokenized (JFLEG is pre-tokenized). For each sentence and reference the official
    statistics are computed (:func:`_gleu_stats`): n-grams 1-4 of the hypothesis that match the
    reference, minus those that match the source but not the reference, over the hypothesis n-gram
    count; statistics are summed over the corpus and
    ``GLEU = exp(min(0, 1 - r/c)) * exp(mean_n log(p_n))`` (0 if any statistic is 0).

    How references are combined:

    * The official ``compute_gleu`` draws, for each of 500 iterations (``random.seed(j * 101)``), one
      reference per sentence uniformly at random, computes the corpus GLEU of that draw, and reports
      the mean over iterations (with 1 reference: a single iteration).
    * Default here (``num_iterations=None``), deterministic: every sentence contributes the *mean* of
      its per-reference statistics (the expected statistics under that uniform draw), and GLEU is
      computed once from the summed expected statistics. This is GLEU(E[stats]) instead of the
      official E[GLEU(stats)]; since the corpus statistics are sums over hundreds of sentences they
      concentrate, and the two agree closely (see the test and report numbers), but not bit for bit.
    * ``num_iterations=k``: the official sampling, reproduced (same seeds and ``random.randint``
      calls, so with a fixed number of references per row it matches ``compute_gleu -n 4 --iter k``).
      With ragged references each row draws among its own references (the official script assumes
      the same count everywhere).

    Args:
        sources: the uncorrected input sentences.
        hyps: system corrections.
        refs: per-row reference corrections (ragged allowed).
        num_iterations: ``None`` for the deterministic expected-statistics variant, else the number
            of official random reference draws.

    Returns:
        ``MetricResult("gleu", 100 * GLEU, signature)``; with sampling, ``details["std"]`` is the
        standard deviation over iterations (0-100 scale).
    """
    rows = _normalize_refs(refs)
    _check_same_length(hyps, rows, "hypotheses and references")
    _check_same_length(sources, hyps, "sources and hypotheses")
    per_ref: list[list[list[float]]] = []
    for src, hyp, row in zip(sources, hyps, rows):
        h, s = hyp.split(), src.split()
        per_ref.append([_gleu_stats(h, s, r.split()) for r in row])
    widths = {len(r) for r in rows}
    nrefs = str(widths.pop()) if len(widths) == 1 else "var"
    width = 2 + 2 * GLEU_ORDER
    if num_iterations is None:
        total = [0.0] * width
        for stats_by_ref in per_ref:
            k = len(stats_by_ref)
            for j in range(width):
                total[j] += sum(st[j] for st in stats_by_ref) / k
        score = 100.0 * _gleu_from_stats(total)
        signature = f"GLEU|nrefs:{nrefs}|n:{GLEU_ORDER}|tok:whitespace|refs:expected-stats"
        return MetricResult("gleu", score, signature, {"stats": total})
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    if max(len(r) for r in rows) == 1:
        num_iterations = 1  # as the official script: nothing to sample
    scores = []
    for it in range(num_iterations):
        rng = random.Random(it * 101)  # same stream as the script's random.seed(j * 101)
        total = [0.0] * width
        for stats_by_ref in per_ref:
            st = stats_by_ref[rng.randint(0, len(stats_by_ref) - 1)]
            for j in range(width):
                total[j] += st[j]
        scores.append(100.0 * _gleu_from_stats(total))
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((x - mean) ** 2 for x in scores) / len(scores))
    signature = f"GLEU|nrefs:{nrefs}|n:{GLEU_ORDER}|tok:whitespace|refs:sampled-{num_iterations}"
    return MetricResult("gleu", mean, signature, {"std": std, "iterations": num_iterations})


# ----------------------------------------------------------------------------------------- ROUGE


def rouge(hyps: Sequence[str], refs: Sequence[str | Sequence[str]], *, use_stemmer: bool = True) -> dict[str, float]:
    """ROUGE-1/2/L F-measure (rouge-score, Porter stemming), 0-100.

    Multi-reference rows take, per ROUGE type, the reference with the best F-measure
    (``RougeScorer.score_multi``); scores are then averaged over rows. rouge-score's default tokenizer
    lowercases and keeps only ``[a-z0-9]`` tokens, so it is meant for English.

    Returns:
        ``{"rouge1": ..., "rouge2": ..., "rougeL": ...}``.
    """
    from rouge_score import rouge_scorer

    rows = _normalize_refs(refs)
    _check_same_length(hyps, rows, "hypotheses and references")
    keys = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=use_stemmer)
    totals = dict.fromkeys(keys, 0.0)
    for hyp, row in zip(hyps, rows):
        scores = scorer.score_multi(row, hyp)
        for k in keys:
            totals[k] += scores[k].fmeasure
    return {k: 100.0 * v / len(rows) for k, v in totals.items()}


# ----------------------------------------------------------------------------------------- classification


def accuracy(preds: Sequence[Hashable], golds: Sequence[Hashable]) -> float:
    """Fraction of rows where ``pred == gold``."""
    _check_same_length(preds, golds)
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
    _check_same_length(preds, golds)
    classes = list(dict.fromkeys(golds)) if labels is None else list(dict.fromkeys(labels))
    class_set = set(classes)
    unknown = {g for g in golds if g not in class_set}
    if unknown:
        raise ValueError(f"gold labels not in `labels`: {sorted(map(str, unknown))}")
    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    for p, g in zip(preds, golds):
        if p == g:
            tp[g] += 1
        else:
            fn[g] += 1
            if p in class_set:
                fp[p] += 1
    f1s = []
    for c in classes:
        denom = 2 * tp[c] + fp[c] + fn[c]
        f1s.append(2 * tp[c] / denom if denom else 0.0)
    return sum(f1s) / len(f1s)


def _normalize_answer(text: str, ignore_case: bool) -> str:
    text = " ".join(str(text).split())
    return text.lower() if ignore_case else text


def exact_match(preds: Sequence[str], golds: Sequence[str | Sequence[str]], *, ignore_case: bool = False) -> float:
    """Fraction of predictions equal to the gold (or to any of its accepted answers).

    Whitespace is normalized (stripped, runs collapsed); ``ignore_case`` also lowercases.
    """
    _check_same_length(preds, golds)
    hits = 0
    for p, g in zip(preds, golds):
        accepted = [g] if isinstance(g, str) else list(g)
        norm = _normalize_answer(p, ignore_case) if p is not None else None
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
    """Spans ``(type, start, end_exclusive)`` of a BIO sequence, with conlleval's semantics.

    A span starts at ``B-X``, or at ``I-X`` whose predecessor is not part of an ``X`` span (``O``, or a
    different type), and ends before ``O``, ``B-*`` or an ``I-Y`` of another type.

    Raises:
        ValueError: a tag that is neither ``O`` nor ``B-X``/``I-X``.
    """
    spans = []
    cur_type, cur_start = None, 0
    for i, tag in enumerate(tags):
        prefix, typ = _split_tag(tag)
        continues = prefix == "I" and typ == cur_type
        if cur_type is not None and not continues:
            spans.append((cur_type, cur_start, i))
            cur_type = None
        if prefix != "O" and not continues:
            cur_type, cur_start = typ, i
    if cur_type is not None:
        spans.append((cur_type, cur_start, len(tags)))
    return spans


def slot_f1(pred_tags: Sequence[Sequence[str]], gold_tags: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Span-level micro precision / recall / F1 over BIO sequences (conlleval semantics).

    A predicted span counts only if type, start and end all match a gold span. Malformed *predicted*
    tags (e.g. from a badly parsed generation) are read as ``O`` and counted in ``n_invalid_tags``;
    malformed gold tags raise. Sequences are compared by token position; a predicted sequence of a
    different length than its gold one is scored as is (spans past the gold end are false positives).

    Returns:
        ``{"precision", "recall", "f1", "n_pred", "n_gold", "n_correct", "n_invalid_tags",
        "per_type": {type: {"precision", "recall", "f1", "n_pred", "n_gold", "n_correct"}}}``
        (fractions in [0, 1]; 0 where undefined).
    """
    _check_same_length(pred_tags, gold_tags, "predicted and gold tag sequences")
    n_invalid = 0
    pred_c: Counter = Counter()
    gold_c: Counter = Counter()
    correct_c: Counter = Counter()
    for pred, gold in zip(pred_tags, gold_tags):
        clean = []
        for t in pred:
            try:
                _split_tag(t)
                clean.append(t)
            except ValueError:
                n_invalid += 1
                clean.append("O")
        p_spans, g_spans = set(bio_spans(clean)), set(bio_spans(gold))
        pred_c.update(s[0] for s in p_spans)
        gold_c.update(s[0] for s in g_spans)
        correct_c.update(s[0] for s in p_spans & g_spans)
    if n_invalid:
        logger.warning("slot_f1: %d predicted tags were not BIO and were read as 'O'", n_invalid)

    def prf(n_pred: int, n_gold: int, n_correct: int) -> dict[str, float]:
        p = n_correct / n_pred if n_pred else 0.0
        r = n_correct / n_gold if n_gold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return {"precision": p, "recall": r, "f1": f, "n_pred": n_pred, "n_gold": n_gold, "n_correct": n_correct}

    result: dict[str, Any] = prf(sum(pred_c.values()), sum(gold_c.values()), sum(correct_c.values()))
    result["n_invalid_tags"] = n_invalid
    result["per_type"] = {t: prf(pred_c[t], gold_c[t], correct_c[t]) for t in sorted(set(pred_c) | set(gold_c))}
    return result
