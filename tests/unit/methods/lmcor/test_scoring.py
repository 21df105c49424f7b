"""Scoring: corpus metrics per task, PTB-tokenised hypotheses, the best single system chosen on dev."""

from __future__ import annotations

import pytest

from tests.unit.methods.lmcor.samples import POOL
from toolkit.methods.lmcor.scoring import best_single_system, prepare_hyps, ptb_tokenize, score_outputs


def test_score_outputs_and_best_single_system():
    refs = [r["references"] for r in POOL]
    scores, sigs = score_outputs("gec", [r["source"] for r in POOL], [r["references"][0] for r in POOL], refs)
    assert set(scores) == {"gleu", "bleu", "chrf"} and scores["bleu"] > 99
    assert "nrefs" in sigs["bleu"]
    best, per_system_dev, outputs = best_single_system(POOL, POOL[:1], task="mt", systems=["A", "B", "C"])
    assert best == "B" and outputs == ["she went to school yesterday ."]  # chosen on dev, outputs on test
    assert per_system_dev["B"]["bleu"] > per_system_dev["A"]["bleu"]
    d2t, _ = score_outputs("d2t", ["mr"] * 2, ["a b", "c d"], [["a b"], ["c e"]])
    assert set(d2t) == {"bleu", "rougeL"}
    with pytest.raises(ValueError, match="length"):
        score_outputs("mt", ["s"], ["a", "b"], [["a"]])


def test_best_single_system_is_chosen_on_dev_not_test():
    def pool(good: str, n: int, tag: str) -> list[dict]:
        rows = []
        for i in range(n):
            ref = f"row {tag} {i} is right ."
            by = {"A": "completely wrong words here", "B": "completely wrong words here"}
            by[good] = ref
            rows.append(
                {
                    "id": f"{tag}{i}",
                    "source": "x",
                    "references": [ref],
                    "candidates": [by["A"], by["B"]],
                    "systems": ["A", "B"],
                }
            )
        return rows

    dev, test = pool("A", 5, "d"), pool("B", 5, "t")  # A is best on dev, B on test
    best, per_system_dev, outputs = best_single_system(dev, test, task="mt", systems=["A", "B"])
    assert best == "A" and per_system_dev["A"]["bleu"] > per_system_dev["B"]["bleu"]
    assert outputs == [r["candidates"][0] for r in test]  # A's outputs on the *test* rows
    # Test references cannot change the choice.
    flipped = [{**r, "references": [r["candidates"][0]]} for r in test]
    assert best_single_system(dev, flipped, task="mt", systems=["A", "B"])[0] == "A"
    with pytest.raises(ValueError, match="dev"):
        best_single_system([], test, task="mt", systems=["A", "B"])


def test_ptb_tokenisation_of_every_hypothesis():
    assert ptb_tokenize("It doesn't work, does it?") == "It does n't work , does it ?"
    assert ptb_tokenize('He said "hi" to society.') == 'He said " hi " to society .'  # JFLEG keeps straight quotes
    assert ptb_tokenize("It does n't work , does it ?") == "It does n't work , does it ?"  # idempotent
    assert ptb_tokenize("I cannot wait.") == "I cannot wait ."  # JFLEG keeps "cannot" whole
    # Tokens copied from the source stay as the source has them (the official script scores sources as given).
    assert ptb_tokenize("the heat(energy) goes.", source="heat(energy) go") == "the heat(energy) goes ."
    assert prepare_hyps(["a\nb.  "], "ptb") == ["a b ."] and prepare_hyps(["a\nb.  "], None) == ["a b."]
    src, refs = ["he go to society"], [["he goes to society ."]]
    raw, _ = score_outputs("gec", src, ["he goes to society."], refs)
    tok, sigs = score_outputs("gec", src, ["he goes to society."], refs, tokenize="ptb")
    assert tok["gleu"] == pytest.approx(100.0) and raw["gleu"] < 100.0
    assert sigs["gleu"].endswith("|hyp:ptb")
