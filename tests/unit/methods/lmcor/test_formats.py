"""The corrector's input: format, candidate picking, training examples, the fair cut into the token budget."""

from __future__ import annotations

import logging
import random

import pytest
from transformers import AutoTokenizer, ByT5Tokenizer

from tests.unit.methods.lmcor.samples import POOL
from toolkit.methods.lmcor.formats import (
    BudgetedFormat,
    CorrectorFormat,
    build_eval_inputs,
    build_training_examples,
    fair_shares,
    pick_candidates,
)
from toolkit.training.student_training import tokenize_pairs


def test_format_paper_style_and_no_stray_newlines():
    fmt = CorrectorFormat()
    text = fmt("x\ny ", ["c1\n", "  c2\t\tz", "c3"])
    assert text == "source: x y <extra_id_0> candidates: c1 <extra_id_0> c2 z <extra_id_0> c3"
    assert "\n" not in text and "\t" not in text
    assert CorrectorFormat(separator=" || ")("s", ["a", "b"]) == "source: s || candidates: a || b"
    with pytest.raises(ValueError):
        CorrectorFormat(separator="  ")
    with pytest.raises(ValueError, match="at least one candidate"):
        fmt("s", [])


def test_pick_candidates_k_order_systems():
    row = POOL[0]
    assert pick_candidates(row, k=2) == ["she goes to school yesterday .", "she went to school yesterday ."]
    assert pick_candidates(row, k=5, systems=["C", "A"]) == [
        "she goes to school yesterday .",
        "she went to the school .",
    ]
    # A random k-subset keeps pool order unless shuffled; shuffling over many draws produces several orders.
    rng = random.Random(0)
    orders = {tuple(pick_candidates(row, k=3, rng=rng, shuffle=True)) for _ in range(30)}
    assert len(orders) > 1 and all(len(o) == 3 for o in orders)
    subsets = {tuple(pick_candidates(row, k=2, rng=rng)) for _ in range(30)}
    assert len(subsets) == 3  # all 2-subsets of 3 show up
    with pytest.raises(ValueError):
        pick_candidates(row, k=0)
    with pytest.raises(ValueError, match="rng"):
        pick_candidates(row, k=2, shuffle=True)


def test_training_examples_multi_reference_and_ablation():
    fmt = CorrectorFormat(separator=" | ")
    ex = build_training_examples(POOL, fmt, k=3, seed=1)
    # one example per reference: 2 + 1
    assert [e["target"] for e in ex] == [*POOL[0]["references"], POOL[1]["references"][0]]
    assert all(e["source"].count(" | ") == 3 for e in ex)  # source | c1 | c2 | c3
    single = build_training_examples(POOL, fmt, k=1, subset=False, multi_reference=False)
    assert [e["source"] for e in single] == [
        "source: she go to school yesterday . | candidates: she goes to school yesterday .",
        "source: the dog run home | candidates: a cat sat",
    ]
    aug = build_training_examples(POOL, fmt, k=2, augment=3, shuffle=True, seed=0)
    assert len(aug) == 9 and len({e["id"] for e in aug}) == 9
    held_out = build_training_examples(POOL, fmt, k=3, systems=["B"])
    expected = [POOL[0]["candidates"][1]] * 2 + [POOL[1]["candidates"][1]]
    assert [e["source"].split("candidates: ")[1] for e in held_out] == expected


def test_fair_shares_is_max_min_fair():
    assert fair_shares([3, 50, 50], 40) == [3, 18, 19]
    assert fair_shares([3, 4], 100) == [3, 4]
    assert sum(fair_shares([10, 20, 30, 40], 37)) == 37
    assert fair_shares([5, 5], -3) == [0, 0]


def _byt5():
    return ByT5Tokenizer()


def _tiny_llama_tok(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.mark.parametrize("which", ["byt5_slow_seq2seq", "tiny_llama_fast_causal"])
def test_long_inputs_are_cut_fairly_and_the_last_candidate_survives(which, tiny_llama_dir, caplog):
    seq2seq = which.startswith("byt5")
    tok = _byt5() if seq2seq else _tiny_llama_tok(tiny_llama_dir)
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 12)
    row = {
        "id": "x",
        "source": "short source",
        "references": ["ref"],
        "candidates": [f"first {long}", f"second {long}", "LAST candidate here"],
    }
    short = {"id": "y", "source": "s", "references": ["r"], "candidates": ["a", "b", "c"]}
    base = CorrectorFormat(separator=" || ")
    max_len = 120
    tokenize = {"is_seq2seq": seq2seq, "max_source_len": max_len, "max_target_len": 8}

    def decoded(text):
        ids = tokenize_pairs([{"source": text, "target": "t"}], tok, **tokenize)[0]["input_ids"]
        return tok.decode(ids, skip_special_tokens=True)

    # The bug: plain right truncation by the student drops the last candidate whole.
    assert "LAST" not in decoded(base(row["source"], row["candidates"]))

    fmt = BudgetedFormat(base, tok, max_len, is_seq2seq=seq2seq)
    with caplog.at_level(logging.WARNING, logger="toolkit.methods.lmcor.formats"):
        train = build_training_examples([row, short], fmt, k=3, subset=False)
        train_cut = fmt.log_cut("train")
        test = build_eval_inputs([row, short], fmt, k=3)
        test_cut = fmt.log_cut("test")
    text = test[0]
    assert len(tok(text, add_special_tokens=False)["input_ids"]) <= max_len - (1 if seq2seq else 0)
    assert "LAST candidate here" in decoded(text)  # short segments stay whole ...
    assert "short source" in text and text.count(" || ") == 3
    assert "first the quick" in text and "second the quick" in text  # ... long ones keep their heads
    assert test[1] == base(short["source"], short["candidates"])  # inputs within budget are untouched
    assert [e["source"] for e in train] == test
    assert (train_cut, test_cut) == (1, 1) and fmt.num_cut == fmt.num_inputs == 0  # counted, then reset
    assert "1 / 2 test corrector inputs were longer than" in caplog.text


def test_single_candidate_training_uses_the_greedy_candidate_even_when_shuffling():
    """The ablation trains on the candidate evaluation uses (the first), not on 1 of k."""
    fmt = CorrectorFormat(separator=" | ")
    evaluated = build_eval_inputs(POOL, fmt, k=1)
    for seed in range(20):
        ex = build_training_examples(POOL, fmt, k=1, subset=False, shuffle=True, multi_reference=False, seed=seed)
        assert [e["source"] for e in ex] == evaluated
    # subset=True still draws random subsets (the augmentation), and shuffle alone only reorders the first k.
    drawn = {build_training_examples(POOL[:1], fmt, k=1, seed=s)[0]["source"] for s in range(20)}
    assert len(drawn) == 3
    orders = {
        build_training_examples(POOL[:1], fmt, k=2, subset=False, shuffle=True, seed=s)[0]["source"] for s in range(20)
    }
    assert all("went to the school" not in o for o in orders) and len(orders) == 2
