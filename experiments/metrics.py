"""Corpus metrics of prediction rows (``predictions.jsonl`` rows whose ``prediction`` is the system's output).

Every metric takes the whole list of rows, so the bootstrap in :mod:`experiments.stats` recomputes it on each
resample exactly as the table computes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sacrebleu


def accuracy(rows: Sequence[dict]) -> float:
    """Share of rows answered right, in percent: a row's own ``correct`` flag, else ``prediction == gold``."""
    return 100.0 * sum(is_correct(row) for row in rows) / len(rows)


def is_correct(row: dict) -> bool:
    if "correct" in row:
        return bool(row["correct"])
    for gold_key in ("gold", "label", "answer"):
        if gold_key in row:
            return str(row["prediction"]).strip() == str(row[gold_key]).strip()
    raise KeyError(f"prediction row {row.get('id')!r} has neither 'correct' nor a gold label ('gold', 'label')")


def _references(rows: Sequence[dict]) -> list[list[str]]:
    """sacrebleu's reference streams: one stream per reference position, shorter lists padded with their first."""
    refs = [row["references"] if isinstance(row["references"], list) else [row["references"]] for row in rows]
    width = max(len(r) for r in refs)
    return [[r[j] if j < len(r) else r[0] for r in refs] for j in range(width)]


def bleu(rows: Sequence[dict]) -> float:
    """Corpus BLEU (sacrebleu defaults) of ``prediction`` against ``references``."""
    return sacrebleu.corpus_bleu([str(row["prediction"]) for row in rows], _references(rows)).score


def chrf(rows: Sequence[dict]) -> float:
    """Corpus chrF (sacrebleu defaults) of ``prediction`` against ``references``."""
    return sacrebleu.corpus_chrf([str(row["prediction"]) for row in rows], _references(rows)).score


def copy_rate(rows: Sequence[dict]) -> float:
    """Share of outputs identical (after whitespace strip) to one of the row's candidates, in percent.

    The candidates are the row's ``candidates`` when it records them; otherwise every ``baseline:`` output that
    selects a candidate (all but a source copy), which makes the rate a lower bound.
    """
    copies = 0
    for row in rows:
        copies += str(row["prediction"]).strip() in {str(c).strip() for c in candidate_outputs(row)}
    return 100.0 * copies / len(rows)


def candidate_outputs(row: dict) -> list[str]:
    if row.get("candidates"):
        return list(row["candidates"])
    return [value for key, value in row.items() if key.startswith("baseline:") and "source" not in key]


METRICS: dict[str, Callable[[Sequence[dict]], float]] = {
    "accuracy": accuracy,
    "bleu": bleu,
    "chrf": chrf,
    "copy_rate": copy_rate,
}


def get_metric(name: str) -> Callable[[Sequence[dict]], float]:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
    return METRICS[name]
