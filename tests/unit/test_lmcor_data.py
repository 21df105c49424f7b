"""LMCor run data (toolkit.methods.lmcor.data, lmcor_truncation, lmcor_eval): examples, splits, candidates, lineage."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import pytest

from tests.fakes.recording_teacher import RecordingTeacher
from toolkit.methods.lmcor import formats as lmcor
from toolkit.methods.lmcor.data import (
    candidates_for_splits,
    corrector_examples,
    split_and_subsample,
    teacher_candidates,
)
from toolkit.methods.lmcor.evaluation import build_lineage
from toolkit.methods.lmcor.truncation import BudgetedFormat, fair_shares

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("_lmcor_recipe_args", REPO / "recipes" / "lmcor.py")
_recipe = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(_recipe)
LMCorArguments, ModelArguments = _recipe.LMCorArguments, _recipe.ModelArguments  # the recipe holds its arguments


def _rows(n: int, prefix: str = "p", with_candidates: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"id": f"{prefix}{i}", "group": f"{prefix}{i}", "source": f"{prefix} sentence {i} bad"}
        row["references"] = [f"{prefix} {i} good ."]
        if with_candidates:
            row["candidates"] = [f"greedy {i}", f"sample {i} a", f"sample {i} b"]
            row["systems"] = ["greedy", "sample", "sample"]
        rows.append(row)
    return rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---- item 1: the single-candidate ablation trains on what it is tested on -----------------------------------------
def test_single_candidate_trains_on_the_candidate_the_test_inputs_use():
    rows = _rows(8)
    args = LMCorArguments(k=3, single_candidate=True, shuffle_candidates=True, multi_reference=False)
    fmt = lmcor.CorrectorFormat(separator=" || ")
    for seed in range(5):
        ex = corrector_examples({"train": rows, "dev": rows[:2], "test": rows}, args, fmt, seed=seed)
        assert [e["source"] for e in ex["train"]] == ex["test"]
        assert all(x.endswith(f"greedy {i}") for i, x in enumerate(ex["test"]))
    assert ex["inputs_cut"] == {"train": 0, "dev": 0, "test": 0}


# ---- item 6: over-long inputs keep every candidate ------------------------------------------------------------
def test_fair_shares_is_max_min_fair():
    assert fair_shares([3, 50, 50], 40) == [3, 18, 19]
    assert fair_shares([3, 4], 100) == [3, 4]
    assert sum(fair_shares([10, 20, 30, 40], 37)) == 37
    assert fair_shares([5, 5], -3) == [0, 0]


def _byt5():
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


def _tiny_llama_tok(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.mark.parametrize("which", ["byt5_slow_seq2seq", "tiny_llama_fast_causal"])
def test_long_inputs_are_cut_fairly_and_the_last_candidate_survives(which, tiny_llama_dir, caplog):
    from toolkit.models.students import tokenize_pairs

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
    base = lmcor.CorrectorFormat(separator=" || ")
    max_len = 120
    tokenize = {"is_seq2seq": seq2seq, "max_source_len": max_len, "max_target_len": 8}

    def decoded(text):
        ids = tokenize_pairs([{"source": text, "target": "t"}], tok, **tokenize)[0]["input_ids"]
        return tok.decode(ids, skip_special_tokens=True)

    # The bug: plain right truncation by the student drops the last candidate whole.
    assert "LAST" not in decoded(base(row["source"], row["candidates"]))

    fmt = BudgetedFormat(base, tok, max_len, is_seq2seq=seq2seq)
    args = LMCorArguments(k=3, shuffle_candidates=False)
    with caplog.at_level(logging.WARNING, logger="toolkit.methods.lmcor.truncation"):
        ex = corrector_examples({"train": [row, short], "dev": [], "test": [row, short]}, args, fmt, seed=0)
    text = ex["test"][0]
    assert len(tok(text, add_special_tokens=False)["input_ids"]) <= max_len - (1 if seq2seq else 0)
    assert "LAST candidate here" in decoded(text)  # short segments stay whole ...
    assert "short source" in text and text.count(" || ") == 3
    assert "first the quick" in text and "second the quick" in text  # ... long ones keep their heads
    assert ex["test"][1] == base(short["source"], short["candidates"])  # inputs within budget are untouched
    assert ex["inputs_cut"] == {"train": 1, "dev": 0, "test": 1}
    assert "1 / 2 test corrector inputs were longer than" in caplog.text


# ---- item 7: given dev / test files ----------------------------------------------------------------------------
def test_test_and_dev_paths_are_validated(tmp_path):
    with pytest.raises(ValueError, match="test_path"):
        LMCorArguments(test_path=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="dev_path"):
        LMCorArguments(dev_path="jfleg:test")  # not in the data folder: a local file is the way
    path = _write(tmp_path / "t.jsonl", _rows(3, "t"))
    with pytest.raises(ValueError, match="same"):
        LMCorArguments(test_path=str(path), dev_path=str(path))
    assert LMCorArguments(test_path="e2e:test", task="e2e").test_path == "e2e:test"


def test_given_test_file_replaces_the_carved_test_split(tmp_path):
    pool = _rows(20, "p")
    test_rows = _rows(5, "t", with_candidates=False)
    test_rows.append({**pool[3], "id": "dup"})  # a pool sentence in the official test set: never trained on
    test_file = _write(tmp_path / "test.jsonl", test_rows)
    args = LMCorArguments(task="jsonl", task_type="gec", pool_path="unused", test_path=str(test_file), dev_size=4)
    splits = split_and_subsample(pool, args)
    assert [r["id"] for r in splits["test"]] == ["t0", "t1", "t2", "t3", "t4", "dup"]
    assert len(splits["dev"]) == 4 and len(splits["train"]) == 20 - 1 - 4
    assert pool[3]["source"] not in {r["source"] for part in ("train", "dev") for r in splits[part]}
    # Only the dev split given: the test split is carved from the pool as before.
    dev_file = _write(tmp_path / "dev.jsonl", _rows(3, "d"))
    args = LMCorArguments(task="jsonl", task_type="gec", pool_path="unused", dev_path=str(dev_file), test_size=6)
    splits = split_and_subsample(pool, args)
    assert [r["id"] for r in splits["dev"]] == ["d0", "d1", "d2"] and len(splits["test"]) == 6
    # Neither given: unchanged carving.
    plain = LMCorArguments(task="jsonl", task_type="gec", pool_path="unused", dev_size=4, test_size=6)
    assert split_and_subsample(pool, plain) == lmcor.split_pool(pool, dev_size=4, test_size=6, seed=42)


def test_named_official_test_split_real_data(data_root):
    args = LMCorArguments(task="e2e", data_dir=str(data_root), test_path="e2e:test", dev_size=30)
    pool = lmcor.load_pool("e2e", data_dir=str(data_root))
    splits = split_and_subsample(pool, args)
    official = lmcor.load_pool("e2e", data_dir=str(data_root), split="test")
    assert [r["source"] for r in splits["test"]] == [r["source"] for r in official]
    assert len(splits["dev"]) >= 30 and len(splits["train"]) + len(splits["dev"]) <= len(pool)


def test_candidates_only_for_rows_without_and_lineage_counts_every_split(monkeypatch, tmp_path):
    """Items 7 + 8: a candidate-less test file gets teacher candidates; the card counts train+dev+test calls."""
    import toolkit.teachers

    fake = RecordingTeacher(answer="out {j}")
    monkeypatch.setattr(toolkit.teachers, "load_teacher", lambda config: fake)
    splits = {
        "train": _rows(6, "p", with_candidates=False),
        "dev": _rows(2, "d", with_candidates=False),
        "test": _rows(3, "p", with_candidates=False),  # same ids as train rows: a separate file may reuse them
    }
    splits["train"][5] = _rows(6, "p")[5]  # already has candidates: kept, no call
    args = LMCorArguments(task="jsonl", task_type="gec", pool_path="unused", k=3, num_demos=2,
                          cache_path=str(tmp_path / "c.sqlite"), max_cost=1.0)  # fmt: skip
    out = candidates_for_splits(splits, args)
    assert {k: len(v) for k, v in out.items()} == {"train": 6, "dev": 2, "test": 3}
    assert [r["id"] for r in out["test"]] == ["p0", "p1", "p2"] and out["train"][5] == splits["train"][5]
    n_rows = 5 + 2 + 3
    assert len(fake.requests) == 2 * n_rows  # 1 greedy + 1 sampling request per row that had no candidates
    lineage = build_lineage(args, ModelArguments(), out)
    assert lineage.num_teacher_calls == 2 * n_rows
    assert lineage.cost_usd == pytest.approx(n_rows * (300 * 1.0 + 30 * 2.0) / 1e6)
    assert lineage.extra["teacher calls by split"] == "train 10, dev 4, test 6"
    assert lineage.dataset_fingerprint == type(lineage).from_generated(out["train"]).dataset_fingerprint


def _demo_pool(n=6):
    return [{"id": f"d{i}", "source": f"sentence {i} bad", "references": [f"sentence {i} good ."]} for i in range(n)]


def _prompt_text(req) -> str:
    return req.prompt or "\n".join(m["content"] for m in req.messages)


def _fake_teacher(monkeypatch) -> RecordingTeacher:
    import toolkit.teachers

    echo = RecordingTeacher()
    monkeypatch.setattr(toolkit.teachers, "load_teacher", lambda config: echo)
    return echo


def test_teacher_candidates_never_use_a_row_as_its_own_demo(monkeypatch, tmp_path):
    """Issue 12 item 5: a training row that is also a demo gets the spare demo instead of its own answer."""
    echo = _fake_teacher(monkeypatch)
    rows = _demo_pool()
    args = LMCorArguments(num_demos=2, k=3, cache_path=str(tmp_path / "c.sqlite"))
    out = teacher_candidates(rows, rows, args)
    assert len(out) == len(rows)
    greedy = [r for r in echo.requests if r.temperature == 0.0]
    assert len(greedy) == len(rows)
    for row, req in zip(rows, greedy):
        text = _prompt_text(req)
        assert text.count("good .") == 2, text  # always num_demos demos ...
        assert row["references"][0] not in text  # ... and never the row's own reference
    # Rows that are not demos see exactly the first num_demos demos (the template hash names those).
    assert "sentence 0 good ." in _prompt_text(greedy[5]) and "sentence 2 good ." not in _prompt_text(greedy[5])
    assert "sentence 2 good ." in _prompt_text(greedy[0])


def test_teacher_candidates_usage_counts_calls_and_cost(monkeypatch, tmp_path):
    """Issue 12 item 8 (row side): each row's usage says how many requests it took and what they cost."""
    from toolkit.publishing.hub import Lineage

    echo = _fake_teacher(monkeypatch)
    rows = _demo_pool(4)
    out = teacher_candidates(rows, rows[:1], LMCorArguments(num_demos=1, k=3, cache_path=str(tmp_path / "c.sqlite")))
    usage = json.loads(out[0]["usage"])
    assert usage["num_calls"] == 2  # 1 greedy + 1 request for the k-1 samples
    # 3 samples x (100 prompt + 10 completion) tokens at $1 / $2 per 1M tokens
    assert usage["cost_usd"] == pytest.approx((300 * 1.0 + 30 * 2.0) / 1e6)
    lineage = Lineage.from_generated(out)
    assert lineage.num_teacher_calls == 2 * len(rows) == len(echo.requests)
    assert lineage.cost_usd == pytest.approx(len(rows) * 360 / 1e6)
