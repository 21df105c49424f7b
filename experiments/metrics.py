"""Corpus metrics of prediction rows (``predictions.jsonl`` rows whose ``prediction`` is the system's output).

Each metric is a :class:`CorpusMetric`: per-row sufficient statistics that add up over rows, and the corpus score
from their sum. BLEU and chrF decompose this way (sacreBLEU computes them the same way: n-gram match counts summed
over the corpus), so the bootstrap in :mod:`experiments.stats` recomputes the exact corpus score of a resample from
one sum instead of re-scoring every sentence. The numbers equal ``sacrebleu.corpus_bleu`` / ``corpus_chrf`` with
their defaults (tested). Slot F1 (span micro F1 of BIO tags) is summed span counts, as
``toolkit.evaluation.metrics.slot_f1`` (seqeval) computes it (tested).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.helpers import extract_all_char_ngrams, extract_all_word_ngrams
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from toolkit.evaluation.metrics import slot_f1

BLEU_ORDER = 4
CHRF_ORDER = 6
CHRF_BETA = 2
EPSILON = 1e-16
_TOKENIZE_13A = Tokenizer13a()


@dataclass(frozen=True)
class CorpusMetric:
    """A corpus metric that decomposes into per-row statistics.

    Attributes:
        name: The metric's name in plans and tables.
        row_statistics: A row -> its statistics (a fixed-length list of numbers).
        from_statistics: The statistics summed over rows -> the corpus score.
    """

    name: str
    row_statistics: Callable[[dict], list[float]]
    from_statistics: Callable[[Sequence[float]], float]

    def __call__(self, rows: Sequence[dict]) -> float:
        if not rows:
            raise ValueError(f"{self.name}: no rows to score")
        per_row = [self.row_statistics(row) for row in rows]
        return self.from_statistics([sum(column) for column in zip(*per_row)])


# ---- accuracy ----
def is_correct(row: dict) -> bool:
    """The row's own ``correct`` flag, else ``prediction == gold`` (``gold``, ``label`` or ``answer``)."""
    if "correct" in row:
        return bool(row["correct"])
    for gold_key in ("gold", "label", "answer"):
        if gold_key in row:
            return str(row["prediction"]).strip() == str(row[gold_key]).strip()
    raise KeyError(f"prediction row {row.get('id')!r} has neither 'correct' nor a gold label ('gold', 'label')")


def share_in_percent(statistics: Sequence[float]) -> float:
    return 100.0 * statistics[0] / statistics[1]


# ---- copy rate ----
def candidate_outputs(row: dict) -> list[str]:
    """The row's candidates, else every ``baseline:`` output that selects a candidate (all but a source copy)."""
    if row.get("candidates"):
        return list(row["candidates"])
    return [value for key, value in row.items() if key.startswith("baseline:") and "source" not in key]


def is_copy(row: dict) -> bool:
    return str(row["prediction"]).strip() in {str(candidate).strip() for candidate in candidate_outputs(row)}


# ---- BLEU (sacreBLEU defaults: 13a tokenisation, exp smoothing) ----
def references(row: dict) -> list[str]:
    refs = row["references"]
    return list(refs) if isinstance(refs, (list, tuple)) else [refs]


def bleu_statistics(row: dict) -> list[float]:
    """[hyp length, closest ref length, matches per order (4), hyp n-grams per order (4)]."""
    hyp_ngrams, hyp_len = extract_all_word_ngrams(_TOKENIZE_13A(str(row["prediction"]).rstrip()), 1, BLEU_ORDER)
    ref_ngrams: Counter = Counter()
    ref_lens = []
    for ref in references(row):
        ngrams, length = extract_all_word_ngrams(_TOKENIZE_13A(ref.rstrip()), 1, BLEU_ORDER)
        ref_lens.append(length)
        for ngram, count in ngrams.items():
            ref_ngrams[ngram] = max(ref_ngrams[ngram], count)
    closest = min(ref_lens, key=lambda length: (abs(hyp_len - length), length))
    correct = [0] * BLEU_ORDER
    total = [0] * BLEU_ORDER
    for ngram, count in hyp_ngrams.items():
        total[len(ngram) - 1] += count
        correct[len(ngram) - 1] += min(count, ref_ngrams.get(ngram, 0))
    return [hyp_len, closest, *correct, *total]


def bleu_from_statistics(statistics: Sequence[float]) -> float:
    correct = [int(x) for x in statistics[2 : 2 + BLEU_ORDER]]
    total = [int(x) for x in statistics[2 + BLEU_ORDER :]]
    return BLEU.compute_bleu(correct, total, int(statistics[0]), int(statistics[1]), smooth_method="exp").score


# ---- chrF (sacreBLEU defaults: character 6-grams, no word n-grams, beta 2, whitespace ignored) ----
def chrf_order_statistics(hypothesis: str, reference: str) -> list[float]:
    """[hyp, ref, match] character n-gram counts for every order 1..6, flattened."""
    statistics = []
    for hyp, ref in zip(
        extract_all_char_ngrams(hypothesis, CHRF_ORDER), extract_all_char_ngrams(reference, CHRF_ORDER)
    ):
        matches = sum(min(count, ref[ngram]) for ngram, count in hyp.items() if ngram in ref)
        # as sacreBLEU: an order the reference has no n-gram of counts no hypothesis n-grams either
        statistics += [sum(hyp.values()) if ref else 0, sum(ref.values()), matches]
    return statistics


def chrf_from_statistics(statistics: Sequence[float]) -> float:
    """chrF of summed statistics: precision and recall averaged over the orders both sides have, then F-beta."""
    factor = CHRF_BETA**2
    precisions, recalls = [], []
    for order in range(CHRF_ORDER):
        n_hyp, n_ref, n_match = statistics[3 * order : 3 * order + 3]
        if n_hyp > 0 and n_ref > 0:
            precisions.append(n_match / n_hyp)
            recalls.append(n_match / n_ref)
    if not precisions:
        return 0.0
    precision = sum(precisions) / len(precisions)
    recall = sum(recalls) / len(recalls)
    if precision + recall == 0:
        return 0.0
    return 100 * (1 + factor) * precision * recall / (factor * precision + recall)


def chrf_statistics(row: dict) -> list[float]:
    """The statistics against the reference with the best sentence chrF (the first on ties), as sacreBLEU picks."""
    best, best_score = None, -1.0
    for ref in references(row):
        statistics = chrf_order_statistics(str(row["prediction"]), ref)
        score = chrf_from_statistics(statistics)
        if score > best_score:
            best, best_score = statistics, score
    return best


# ---- slot F1 (span-level micro F1, as toolkit.evaluation.metrics.slot_f1: conlleval semantics) ----
def slot_statistics(row: dict) -> list[float]:
    """[correct spans, predicted spans, gold spans] of the row's predicted BIO tags against ``gold_tags``."""
    counts = slot_f1([row["prediction"]], [row["gold_tags"]])
    return [counts["n_correct"], counts["n_pred"], counts["n_gold"]]


def slot_f1_from_statistics(statistics: Sequence[float]) -> float:
    """Micro F1 in percent, ``2 * correct / (predicted + gold)``: 0 when neither side has a span."""
    correct, predicted, gold = statistics
    return 100.0 * 2 * correct / (predicted + gold) if predicted + gold else 0.0


METRICS: dict[str, CorpusMetric] = {
    "accuracy": CorpusMetric("accuracy", lambda row: [float(is_correct(row)), 1.0], share_in_percent),
    "copy_rate": CorpusMetric("copy_rate", lambda row: [float(is_copy(row)), 1.0], share_in_percent),
    "bleu": CorpusMetric("bleu", bleu_statistics, bleu_from_statistics),
    "chrf": CorpusMetric("chrf", chrf_statistics, chrf_from_statistics),
    "slot_f1": CorpusMetric("slot_f1", slot_statistics, slot_f1_from_statistics),
}


def get_metric(name: str) -> CorpusMetric:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
    return METRICS[name]
