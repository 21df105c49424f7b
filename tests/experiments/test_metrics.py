"""Corpus metrics: BLEU and chrF from summed per-row statistics equal sacreBLEU's corpus scores, slot F1 the
toolkit's (seqeval) span F1."""

from __future__ import annotations

import random

import pytest
import sacrebleu

from experiments.metrics import get_metric

WORDS = "the a of to in is was he she it went school yesterday house city car , . said don't Straße".split()


def _rows(seed: int) -> list[dict]:
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 25)))

    rows = [
        {"prediction": sentence(), "references": [sentence() for _ in range(rng.randint(1, 3))]} for _ in range(80)
    ]
    rows += [{"prediction": "", "references": ["x y"]}, {"prediction": "a b", "references": ["x"]}]
    return rows


def _streams(rows: list[dict]) -> list[list[str]]:
    width = max(len(row["references"]) for row in rows)
    return [
        [r["references"][j] if j < len(r["references"]) else r["references"][0] for r in rows] for j in range(width)
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bleu_and_chrf_equal_sacrebleu(seed):
    rows = _rows(seed)
    hyps = [row["prediction"] for row in rows]
    assert get_metric("bleu")(rows) == pytest.approx(sacrebleu.corpus_bleu(hyps, _streams(rows)).score, abs=1e-9)
    assert get_metric("chrf")(rows) == pytest.approx(sacrebleu.corpus_chrf(hyps, _streams(rows)).score, abs=1e-9)


def test_accuracy_reads_the_correct_flag_or_the_gold_label():
    rows = [{"correct": True}, {"prediction": "b", "gold": "b"}, {"prediction": "a", "label": "b"}, {"correct": 0}]
    assert get_metric("accuracy")(rows) == 50.0
    with pytest.raises(KeyError, match="gold label"):
        get_metric("accuracy")([{"id": "r1", "prediction": "a"}])


def test_copy_rate_counts_outputs_equal_to_a_candidate():
    rows = [
        {"prediction": "b ", "candidates": ["a", "b"]},
        {"prediction": "c", "candidates": ["a", "b"]},
        {"prediction": "m", "baseline:MBR (chrF consensus)": "m", "baseline:source copy": "s"},
        {"prediction": "s", "baseline:MBR (chrF consensus)": "m", "baseline:source copy": "s"},
    ]
    assert get_metric("copy_rate")(rows) == 50.0


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="unknown metric 'gleu'"):
        get_metric("gleu")


def test_slot_f1_from_row_counts_equals_the_toolkits_corpus_slot_f1():
    from toolkit.evaluation.metrics import slot_f1

    rng = random.Random(0)
    tags = ["O", "O", "B-city", "I-city", "B-artist", "I-artist", "I-city"]
    rows = []
    for _ in range(60):
        gold = [rng.choice(tags) for _ in range(rng.randint(1, 8))]
        predicted = [tag if rng.random() < 0.7 else rng.choice(tags) for tag in gold]
        rows.append({"prediction": predicted, "gold_tags": gold})
    rows += [
        {"prediction": ["O", "garbage", "B-city"], "gold_tags": ["O", "O"]},
        {"prediction": [], "gold_tags": ["O"]},
    ]
    expected = slot_f1([row["prediction"] for row in rows], [row["gold_tags"] for row in rows])["f1"]
    assert get_metric("slot_f1")(rows) == pytest.approx(100 * expected)
    assert get_metric("slot_f1")([{"prediction": ["O"], "gold_tags": ["O"]}]) == 0.0
