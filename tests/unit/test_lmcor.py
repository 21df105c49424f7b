"""LMCor pieces: input format, candidate picking, training examples, selectors and baselines, pools, demo set."""

from __future__ import annotations

import json
import random

import pytest

from toolkit.methods.lmcor import formats as lmcor
from toolkit.methods.lmcor import scoring as lmcor_scoring
from toolkit.methods.lmcor import selectors as lmcor_selectors
from toolkit.methods.lmcor.formats import CorrectorFormat

POOL = [
    {
        "id": "r0",
        "source": "she go to school yesterday .",
        "references": ["she went to school yesterday .", "She went to school yesterday ."],
        "candidates": [
            "she goes to school yesterday .\n",
            "she went to school yesterday .",
            "she went to the school .",
        ],
        "systems": ["A", "B", "C"],
    },
    {
        "id": "r1",
        "source": "the dog run home",
        "references": ["the dog runs home ."],
        "candidates": ["a cat sat", "the dog runs home .", "the dog ran home ."],
        "systems": ["A", "B", "C"],
    },
]


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
    assert lmcor.pick_candidates(row, k=2) == ["she goes to school yesterday .", "she went to school yesterday ."]
    assert lmcor.pick_candidates(row, k=5, systems=["C", "A"]) == [
        "she goes to school yesterday .",
        "she went to the school .",
    ]
    # A random k-subset keeps pool order unless shuffled; shuffling over many draws produces several orders.
    rng = random.Random(0)
    orders = {tuple(lmcor.pick_candidates(row, k=3, rng=rng, shuffle=True)) for _ in range(30)}
    assert len(orders) > 1 and all(len(o) == 3 for o in orders)
    subsets = {tuple(lmcor.pick_candidates(row, k=2, rng=rng)) for _ in range(30)}
    assert len(subsets) == 3  # all 2-subsets of 3 show up
    with pytest.raises(ValueError):
        lmcor.pick_candidates(row, k=0)
    with pytest.raises(ValueError, match="rng"):
        lmcor.pick_candidates(row, k=2, shuffle=True)


def test_training_examples_multi_reference_and_ablation():
    fmt = CorrectorFormat(separator=" | ")
    ex = lmcor.build_training_examples(POOL, fmt, k=3, seed=1)
    # one example per reference: 2 + 1
    assert [e["target"] for e in ex] == [*POOL[0]["references"], POOL[1]["references"][0]]
    assert all(e["source"].count(" | ") == 3 for e in ex)  # source | c1 | c2 | c3
    single = lmcor.build_training_examples(POOL, fmt, k=1, subset=False, multi_reference=False)
    assert [e["source"] for e in single] == [
        "source: she go to school yesterday . | candidates: she goes to school yesterday .",
        "source: the dog run home | candidates: a cat sat",
    ]
    aug = lmcor.build_training_examples(POOL, fmt, k=2, augment=3, shuffle=True, seed=0)
    assert len(aug) == 9 and len({e["id"] for e in aug}) == 9
    held_out = lmcor.build_training_examples(POOL, fmt, k=3, systems=["B"])
    expected = [POOL[0]["candidates"][1]] * 2 + [POOL[1]["candidates"][1]]
    assert [e["source"].split("candidates: ")[1] for e in held_out] == expected


def test_mbr_picks_the_consensus_candidate():
    cands = ["the cat sat on the mat .", "a dog barked loudly", "the cat sat on a mat .", "the cat sat on the mat"]
    # The two near-duplicates support each other; the outlier never wins.
    assert lmcor_selectors.mbr_select(cands) in (0, 3)
    assert lmcor_selectors.mbr_select(["zzz", "the cat sat", "the cat sat ."]) in (1, 2)
    assert lmcor_selectors.mbr_select(["only"]) == 0


def test_oracle_beats_every_selector_on_hand_made_pools():
    pools = [
        {
            "id": "a",
            "source": "s",
            "references": ["the dog runs home ."],
            "candidates": ["x y z", "the dog runs home .", "dog run"],
        },
        {
            "id": "b",
            "source": "s",
            "references": ["I like tea ."],
            "candidates": ["I likes tea .", "I like tea", "you like coffee"],
        },
        {"id": "c", "source": "s", "references": ["ok ."], "candidates": ["ok .", "okay", "ok"]},
    ]
    out = lmcor_selectors.baseline_outputs(pools, task="mt", k=3, seed=0)
    oracle_chrf = lmcor_scoring.oracle_label("chrf")
    assert out[oracle_chrf] == ["the dog runs home .", "I like tea", "ok ."]
    # The per-sentence chrF pick (oracle_select) agrees here.
    assert [p["candidates"][lmcor_selectors.oracle_select(p["candidates"], p["references"])] for p in pools] == out[
        oracle_chrf
    ]
    refs = [r["references"] for r in pools]
    scores = {n: lmcor_scoring.score_outputs("mt", ["s"] * 3, h, refs)[0] for n, h in out.items()}
    for metric in ("bleu", "chrf"):
        assert scores[lmcor_scoring.oracle_label(metric)][metric] >= max(s[metric] for s in scores.values()) - 1e-9
    assert "source copy" not in out


def test_baselines_gec_source_copy_and_seeded_random():
    out1 = lmcor_selectors.baseline_outputs(POOL, task="gec", k=3, seed=3)
    out2 = lmcor_selectors.baseline_outputs(POOL, task="gec", k=3, seed=3)
    assert out1 == out2
    assert out1["source copy"] == [r["source"] for r in POOL]
    assert out1["first candidate"][0] == "she goes to school yesterday ."  # newline stripped
    with pytest.raises(ValueError):
        lmcor_selectors.baseline_outputs(POOL, task="nope", k=3)


def test_score_outputs_and_best_single_system():
    refs = [r["references"] for r in POOL]
    scores, sigs = lmcor_scoring.score_outputs(
        "gec", [r["source"] for r in POOL], [r["references"][0] for r in POOL], refs
    )
    assert set(scores) == {"gleu", "bleu", "chrf"} and scores["bleu"] > 99
    assert "nrefs" in sigs["bleu"]
    best, per_system_dev, outputs = lmcor_scoring.best_single_system(
        POOL, POOL[:1], task="mt", systems=["A", "B", "C"]
    )
    assert best == "B" and outputs == ["she went to school yesterday ."]  # chosen on dev, outputs on test
    assert per_system_dev["B"]["bleu"] > per_system_dev["A"]["bleu"]
    d2t, _ = lmcor_scoring.score_outputs("d2t", ["mr"] * 2, ["a b", "c d"], [["a b"], ["c e"]])
    assert set(d2t) == {"bleu", "rougeL"}
    with pytest.raises(ValueError, match="length"):
        lmcor_scoring.score_outputs("mt", ["s"], ["a", "b"], [["a"]])


def test_validate_pool_errors():
    with pytest.raises(ValueError, match="references"):
        lmcor.validate_pool([{"source": "s", "references": [], "candidates": ["a"]}])
    with pytest.raises(ValueError, match="systems"):
        lmcor.validate_pool([{"source": "s", "references": ["r"], "candidates": ["a"], "systems": ["x", "y"]}])
    with pytest.raises(ValueError, match="empty"):
        lmcor.validate_pool([])


def test_demo_set_is_shipped_and_reproducible(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = Path(lmcor.demo_gec_path())
    assert path.stat().st_size < 200_000
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert 250 <= len(rows) <= 400
    assert all(r["source"] != r["references"][0] for r in rows)
    kinds = {k for r in rows for k in r["errors"]}
    assert kinds == {"article", "agreement", "tense", "preposition", "spelling"}
    out = tmp_path / "demo.jsonl"
    subprocess.run([sys.executable, str(path.with_name("make_demo_gec.py")), "--out", str(out)], check=True)
    assert out.read_text() == path.read_text()


def test_load_and_split_demo_pool_keeps_groups_apart():
    rows = lmcor.load_pool("demo_gec")
    splits = lmcor.split_pool(rows, dev_size=10, test_size=30, seed=1)
    groups = {name: {r["group"] for r in part} for name, part in splits.items()}
    assert not (groups["train"] & groups["test"]) and not (groups["dev"] & groups["test"])
    assert sum(len(p) for p in splits.values()) == len(rows)
    assert splits == lmcor.split_pool(rows, dev_size=10, test_size=30, seed=1)
    with pytest.raises(ValueError, match="unknown LMCor task"):
        lmcor.load_pool("nope")


def test_wmt22_pool_real_data(data_root):
    rows = lmcor.load_pool("wmt22_ende", data_dir=str(data_root))
    assert len(rows) == 2037 and len(rows[0]["systems"]) == 9
    inputs = lmcor.build_eval_inputs(
        rows[:5], CorrectorFormat(), k=4, systems=["Online-B", "Online-W", "Online-Y", "PROMT"]
    )
    assert all(x.count("<extra_id_0>") == 4 for x in inputs)


@pytest.mark.parametrize("task,n_rows", [("jfleg", 754), ("e2e", 547)])
def test_teacher_pools_real_data(data_root, task, n_rows):
    rows = lmcor.load_pool(task, data_dir=str(data_root))
    assert len(rows) == n_rows and all(isinstance(r["source"], str) and r["references"] for r in rows)
    splits = lmcor.split_pool(rows, dev_size=30, test_size=150)
    assert {k: len(v) for k, v in splits.items()} == {"train": n_rows - 180, "dev": 30, "test": 150}


def test_single_candidate_training_uses_the_greedy_candidate_even_when_shuffling():
    """Issue 12 item 1: the ablation must train on the candidate evaluation uses (the first), not 1-of-k."""
    fmt = CorrectorFormat(separator=" | ")
    evaluated = lmcor.build_eval_inputs(POOL, fmt, k=1)
    for seed in range(20):
        ex = lmcor.build_training_examples(
            POOL, fmt, k=1, subset=False, shuffle=True, multi_reference=False, seed=seed
        )
        assert [e["source"] for e in ex] == evaluated
    # subset=True still draws random subsets (the augmentation), and shuffle alone only reorders the first k.
    drawn = {lmcor.build_training_examples(POOL[:1], fmt, k=1, seed=s)[0]["source"] for s in range(20)}
    assert len(drawn) == 3
    orders = {
        lmcor.build_training_examples(POOL[:1], fmt, k=2, subset=False, shuffle=True, seed=s)[0]["source"]
        for s in range(20)
    }
    assert all("went to the school" not in o for o in orders) and len(orders) == 2
