"""LMCor run data: pools, the split (carved or given files), teacher candidates, the corrector's examples."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import toolkit.teachers
from tests.fakes.recording_teacher import RecordingTeacher
from tests.unit.methods.lmcor.samples import held_out_config, mt_rows
from toolkit.methods.lmcor.config import POOL_TASKS, WMT22_POOLS, LMCorConfig
from toolkit.methods.lmcor.data import (
    candidates_for_splits,
    corrector_examples,
    demo_gec_path,
    eval_candidates,
    filter_rows,
    load_pool,
    load_splits,
    split_and_subsample,
    split_pool,
    teacher_candidates,
    validate_pool,
)
from toolkit.methods.lmcor.evaluation import build_lineage
from toolkit.methods.lmcor.formats import CorrectorFormat, build_eval_inputs
from toolkit.publishing.lineage import Lineage
from toolkit.teachers import TeacherConfig

SYSTEMS = ["S1", "S2", "S3", "U1", "U2"]


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


# ---- pools ---------------------------------------------------------------------------------------------------------
def test_validate_pool_errors():
    with pytest.raises(ValueError, match="references"):
        validate_pool([{"source": "s", "references": [], "candidates": ["a"]}])
    with pytest.raises(ValueError, match="systems"):
        validate_pool([{"source": "s", "references": ["r"], "candidates": ["a"], "systems": ["x", "y"]}])
    with pytest.raises(ValueError, match="empty"):
        validate_pool([])


def test_demo_set_is_shipped_and_reproducible(tmp_path):
    path = Path(demo_gec_path())
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
    rows = load_pool("demo_gec")
    splits = split_pool(rows, dev_size=10, test_size=30, seed=1)
    groups = {name: {r["group"] for r in part} for name, part in splits.items()}
    assert not (groups["train"] & groups["test"]) and not (groups["dev"] & groups["test"])
    assert sum(len(p) for p in splits.values()) == len(rows)
    assert splits == split_pool(rows, dev_size=10, test_size=30, seed=1)
    with pytest.raises(ValueError, match="unknown LMCor task"):
        load_pool("nope")


def test_wmt22_pool_real_data(data_root):
    rows = load_pool("wmt22_ende", data_dir=str(data_root))
    assert len(rows) == 2037 and len(rows[0]["systems"]) == 9
    inputs = build_eval_inputs(rows[:5], CorrectorFormat(), k=4, systems=["Online-B", "Online-W", "Online-Y", "PROMT"])
    assert all(x.count("<extra_id_0>") == 4 for x in inputs)


@pytest.mark.parametrize("task,n_rows", [("jfleg", 754), ("e2e", 547)])
def test_teacher_pools_real_data(data_root, task, n_rows):
    rows = load_pool(task, data_dir=str(data_root))
    assert len(rows) == n_rows and all(isinstance(r["source"], str) and r["references"] for r in rows)
    splits = split_pool(rows, dev_size=30, test_size=150)
    assert {k: len(v) for k, v in splits.items()} == {"train": n_rows - 180, "dev": 30, "test": 150}


@pytest.mark.parametrize(
    "task,n,n_systems", [("wmt22_deen", 1984, 9), ("wmt22_zhen", 1875, 12), ("wmt22_csen", 1448, 11)]
)
def test_into_english_pools_load_through_load_pool(data_root, task, n, n_systems):
    rows = load_pool(task, data_dir=str(data_root))
    assert POOL_TASKS[task] == "mt" and len(rows) == n
    assert all(len(r["candidates"]) == len(r["systems"]) == n_systems and len(r["references"]) == 2 for r in rows)
    assert rows[0]["id"] == f"wmt22-{WMT22_POOLS[task]}-0"


# ---- the run's rows ----------------------------------------------------------------------------------------------
def test_split_block_keeps_runs_of_consecutive_rows_in_one_split(tmp_path):
    rows = [
        {"id": f"r{i}", "group": f"r{i}", "source": "w " * (3 if i % 4 else 30), "references": ["x"]}
        for i in range(200)
    ]
    config = LMCorConfig(
        task="jsonl", task_type="mt", pool_path="x", split_block=10, max_source_words=5, dev_size=20, test_size=40
    )
    kept = filter_rows(rows, config)
    assert len(kept) == 150 and kept[0]["group"] == "block-0" and kept[-1]["group"] == "block-19"
    splits = split_and_subsample(kept, config)
    where = {r["id"]: name for name, part in splits.items() for r in part}
    for b in range(20):  # every block lies in exactly one split (blocks set before the length filter)
        assert len({where[f"r{i}"] for i in range(b * 10, b * 10 + 10) if i % 4}) == 1
    assert splits == split_and_subsample(filter_rows(rows, config), config)  # deterministic
    pool = _write(tmp_path / "pool.jsonl", rows)
    from_file = load_splits(dataclasses.replace(config, pool_path=str(pool)))
    assert {name: [row["id"] for row in part] for name, part in from_file.items()} == {
        name: [row["id"] for row in part] for name, part in splits.items()
    }


def test_max_source_chars_drops_long_sources_written_without_spaces():
    rows = [{"id": f"r{i}", "source": "中" * (10 + i), "references": ["x"]} for i in range(6)]
    config = LMCorConfig(task="jsonl", task_type="mt", pool_path="x", split_block=2, max_source_chars=12)
    kept = filter_rows(rows, config)
    assert [row["id"] for row in kept] == ["r0", "r1", "r2"]
    assert [row["group"] for row in kept] == ["block-0", "block-0", "block-1"]
    with pytest.raises(ValueError, match="max_source_chars"):
        LMCorConfig(task="jsonl", task_type="mt", pool_path="x", max_source_chars=0)


def test_given_test_file_replaces_the_carved_test_split(tmp_path):
    pool = _rows(20, "p")
    test_rows = _rows(5, "t", with_candidates=False)
    test_rows.append({**pool[3], "id": "dup"})  # a pool sentence in the official test set: never trained on
    test_file = _write(tmp_path / "test.jsonl", test_rows)
    config = LMCorConfig(task="jsonl", task_type="gec", pool_path="unused", test_path=str(test_file), dev_size=4)
    splits = split_and_subsample(pool, config)
    assert [r["id"] for r in splits["test"]] == ["t0", "t1", "t2", "t3", "t4", "dup"]
    assert len(splits["dev"]) == 4 and len(splits["train"]) == 20 - 1 - 4
    assert pool[3]["source"] not in {r["source"] for part in ("train", "dev") for r in splits[part]}
    # Only the dev split given: the test split is carved from the pool as before.
    dev_file = _write(tmp_path / "dev.jsonl", _rows(3, "d"))
    config = LMCorConfig(task="jsonl", task_type="gec", pool_path="unused", dev_path=str(dev_file), test_size=6)
    splits = split_and_subsample(pool, config)
    assert [r["id"] for r in splits["dev"]] == ["d0", "d1", "d2"] and len(splits["test"]) == 6
    # Neither given: unchanged carving.
    plain = LMCorConfig(task="jsonl", task_type="gec", pool_path="unused", dev_size=4, test_size=6)
    assert split_and_subsample(pool, plain) == split_pool(pool, dev_size=4, test_size=6, seed=42)


def test_named_official_test_split_real_data(data_root):
    config = LMCorConfig(task="e2e", data_dir=str(data_root), test_path="e2e:test", dev_size=30)
    pool = load_pool("e2e", data_dir=str(data_root))
    splits = split_and_subsample(pool, config)
    official = load_pool("e2e", data_dir=str(data_root), split="test")
    assert [r["source"] for r in splits["test"]] == [r["source"] for r in official]
    assert len(splits["dev"]) >= 30 and len(splits["train"]) + len(splits["dev"]) <= len(pool)


# ---- teacher candidates --------------------------------------------------------------------------------------------
def test_candidates_only_for_rows_without_and_lineage_counts_every_split(monkeypatch, tmp_path):
    """A candidate-less test file gets teacher candidates; the card counts the calls of train, dev and test."""
    fake = RecordingTeacher(answer="out {j}")
    monkeypatch.setattr(toolkit.teachers, "load_teacher", lambda teacher: fake)
    splits = {
        "train": _rows(6, "p", with_candidates=False),
        "dev": _rows(2, "d", with_candidates=False),
        "test": _rows(3, "p", with_candidates=False),  # same ids as train rows: a separate file may reuse them
    }
    splits["train"][5] = _rows(6, "p")[5]  # already has candidates: kept, no call
    config = LMCorConfig(
        task="jsonl",
        task_type="gec",
        pool_path="unused",
        k=3,
        num_demos=2,
        cache_path=str(tmp_path / "c.sqlite"),
        max_cost=1.0,
    )
    out = candidates_for_splits(splits, config, TeacherConfig())
    assert {k: len(v) for k, v in out.items()} == {"train": 6, "dev": 2, "test": 3}
    assert [r["id"] for r in out["test"]] == ["p0", "p1", "p2"] and out["train"][5] == splits["train"][5]
    n_rows = 5 + 2 + 3
    assert len(fake.requests) == 2 * n_rows  # 1 greedy + 1 sampling request per row that had no candidates
    lineage = build_lineage(config, out, base_model="student")
    assert lineage.num_teacher_calls == 2 * n_rows
    assert lineage.cost_usd == pytest.approx(n_rows * (300 * 1.0 + 30 * 2.0) / 1e6)
    assert lineage.extra["teacher calls by split"] == "train 10, dev 4, test 6"
    assert lineage.dataset_fingerprint == type(lineage).from_generated(out["train"]).dataset_fingerprint


def _demo_pool(n=6):
    return [{"id": f"d{i}", "source": f"sentence {i} bad", "references": [f"sentence {i} good ."]} for i in range(n)]


def _prompt_text(req) -> str:
    return req.prompt or "\n".join(m["content"] for m in req.messages)


def _fake_teacher(monkeypatch) -> RecordingTeacher:
    echo = RecordingTeacher()
    monkeypatch.setattr(toolkit.teachers, "load_teacher", lambda teacher: echo)
    return echo


def test_teacher_candidates_never_use_a_row_as_its_own_demo(monkeypatch, tmp_path):
    """A training row that is also a demo gets the spare demo instead of its own answer."""
    echo = _fake_teacher(monkeypatch)
    rows = _demo_pool()
    config = LMCorConfig(num_demos=2, k=3, cache_path=str(tmp_path / "c.sqlite"))
    out = teacher_candidates(rows, rows, config, TeacherConfig())
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
    """Each row's usage says how many requests it took and what they cost."""
    echo = _fake_teacher(monkeypatch)
    rows = _demo_pool(4)
    config = LMCorConfig(num_demos=1, k=3, cache_path=str(tmp_path / "c.sqlite"))
    out = teacher_candidates(rows, rows[:1], config, TeacherConfig())
    usage = json.loads(out[0]["usage"])
    assert usage["num_calls"] == 2  # 1 greedy + 1 request for the k-1 samples
    # 3 samples x (100 prompt + 10 completion) tokens at $1 / $2 per 1M tokens
    assert usage["cost_usd"] == pytest.approx((300 * 1.0 + 30 * 2.0) / 1e6)
    lineage = Lineage.from_generated(out)
    assert lineage.num_teacher_calls == 2 * len(rows) == len(echo.requests)
    assert lineage.cost_usd == pytest.approx(len(rows) * 360 / 1e6)


# ---- the corrector's examples --------------------------------------------------------------------------------------
def test_single_candidate_trains_on_the_candidate_the_test_inputs_use():
    rows = _rows(8)
    config = LMCorConfig(k=3, single_candidate=True, shuffle_candidates=True, multi_reference=False)
    fmt = CorrectorFormat(separator=" || ")
    for seed in range(5):
        ex = corrector_examples({"train": rows, "dev": rows[:2], "test": rows}, config, fmt, seed=seed)
        assert [e["source"] for e in ex["train"]] == ex["test"]
        assert all(x.endswith(f"greedy {i}") for i, x in enumerate(ex["test"]))
    assert ex["inputs_cut"] == {"train": 0, "dev": 0, "test": 0}


def test_no_candidates_examples_are_source_to_reference_on_the_same_rows():
    rows = mt_rows(SYSTEMS, 4)
    config = held_out_config(no_candidates=True, k=4)
    ex = corrector_examples({"train": rows, "dev": rows[:1], "test": rows}, config, CorrectorFormat(" || "), seed=0)
    # one example per reference, the input is the prefixed source only: no candidate text, no separator
    assert [e["target"] for e in ex["train"]] == [r for row in rows for r in row["references"]]
    assert [e["source"] for e in ex["train"]][:2] == ["source: Quelle 0 Satz"] * 2
    assert ex["test"] == [f"source: Quelle {i} Satz" for i in range(4)]
    assert not any("out" in e["source"] or "||" in e["source"] for e in ex["train"] + ex["dev"])


def test_reranker_trains_on_the_corrector_inputs_to_output_the_candidate_closest_to_the_reference():
    rows = [
        {
            **row,
            "references": [f"the answer {i} is here", f"U1 out {i}"],
            "candidates": [f"S1 the answer {i} is here", f"S2 out {i}", "S3 nothing", f"U1 out {i}", f"U2 {i}"],
            "systems": ["S1", "S2", "S3", "U1", "U2"],
        }
        for i, row in enumerate(mt_rows(SYSTEMS, 6))
    ]
    splits = {"train": rows, "dev": rows[:2], "test": rows}
    fmt = CorrectorFormat(" || ")
    corrector = corrector_examples(splits, held_out_config(k=3, shuffle_candidates=True), fmt, seed=3)
    reranker = corrector_examples(splits, held_out_config(k=3, shuffle_candidates=True, mode="reranker"), fmt, seed=3)
    assert [e["source"] for e in reranker["train"]] == [e["source"] for e in corrector["train"]]
    assert reranker["test"] == corrector["test"]
    for example in reranker["train"] + reranker["dev"]:
        shown = example["source"].split(" || candidates: ")[1].split(" || ")
        assert example["target"] in shown
    # the first reference is closest to S1's output, which every training example of k = 3 of 3 systems shows
    assert {e["target"] for e in reranker["train"] if e["id"].endswith("/ref0/aug0")} == {
        f"S1 the answer {i} is here" for i in range(6)
    }
    assert {e["target"] for e in reranker["train"] if e["id"].endswith("/ref1/aug0")} == {
        f"S2 out {i}" for i in range(6)
    }


def test_test_candidates_are_the_candidates_the_test_inputs_show():
    rows = mt_rows(SYSTEMS, 3)
    config = held_out_config(k=2)
    candidates = eval_candidates(rows, config)
    assert candidates == [[f"U1 out {i}", f"U2 out {i}"] for i in range(3)]
    inputs = build_eval_inputs(rows, CorrectorFormat(" || "), k=2, systems=["U1", "U2"])
    assert [text.split(" || candidates: ")[1].split(" || ") for text in inputs] == candidates


def test_k1_trains_on_one_training_system_and_tests_on_the_first_unseen_system():
    rows = mt_rows(SYSTEMS, 10)
    config = held_out_config(k=1, shuffle_candidates=True)
    ex = corrector_examples({"train": rows, "dev": rows[:2], "test": rows}, config, CorrectorFormat(" || "), seed=1)
    for e in ex["train"]:
        parts = e["source"].split(" || ")
        assert len(parts) == 2 and parts[1].split()[1] in ("S1", "S2", "S3")
    assert {e["source"].split(" || ")[1].split()[1] for e in ex["train"]} == {"S1", "S2", "S3"}  # random per example
    assert ex["test"] == [f"source: Quelle {i} Satz || candidates: U1 out {i}" for i in range(10)]
