"""data_gen/candidates.py end to end against the fake OpenAI server (in-process and as a killed subprocess)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import load_from_disk

from data_gen import candidates
from toolkit.generation.cache import GenerationCache
from toolkit.generation.jobs import read_jsonl

REPO = Path(__file__).resolve().parents[2]
SECRET = "sk-test-CANDIDATES-secret-9876"


@pytest.fixture
def gec_file(tmp_path) -> Path:
    path = tmp_path / "gec.jsonl"
    with open(path, "w") as fh:
        for i in range(30):
            fh.write(
                json.dumps({"id": f"s{i}", "source": f"she go to school {i} .", "references": [f"she goes {i} ."]})
                + "\n"
            )
    return path


def _args(server, gec_file, out, cache, *extra):
    return [
        "--backend",
        "openai",
        "--model",
        "fake",
        "--base_url",
        server.base_url,
        "--api_key",
        SECRET,
        "--input_file",
        str(gec_file),
        "--output_dir",
        str(out),
        "--cache_path",
        str(cache),
        "--input_template",
        "Sentence: {source}",
        "--output_template",
        "Corrected: {target}",
        "--num_demos",
        "2",
        "--num_candidates",
        "4",
        "--progress",
        "false",
        *extra,
    ]


def _run(args):
    return candidates.main(*candidates.make_parser().parse_args_and_config(args))


def _messy(prompt, index, seed, body):
    # Trailing whitespace/newlines, as real teachers emit: the job must strip them.
    return f"fixed {abs(hash((prompt[-30:], index, seed))) % 997} .\n\n  "


def test_candidates_job_outputs_lineage_and_reruns_free(fake_openai, gec_file, tmp_path):
    fake_openai.responder = _messy
    out, cache = tmp_path / "out", tmp_path / "cache" / "c.sqlite"
    summary = _run(_args(fake_openai, gec_file, out, cache))
    assert summary["completed"] == 30 and summary["failed"] == 0
    assert len(fake_openai.requests) == 60  # greedy + one n=3 sampled request per item
    rows = read_jsonl(out / "data.jsonl")
    assert [r["id"] for r in rows] == [f"s{i}" for i in range(30)]
    row = rows[0]
    assert row["candidate_kinds"] == ["greedy", "sample", "sample", "sample"]
    assert len(row["candidates"]) == 4 and all(c == c.strip() and c for c in row["candidates"])
    assert row["source"] == "she go to school 0 ." and row["references"] == ["she goes 0 ."]
    assert row["teacher_id"] == f"openai:fake@127.0.0.1:{fake_openai.port}" and len(row["template_hash"]) == 16
    assert json.loads(row["sampling"])["sample"]["temperature"] == 0.7
    assert json.loads(row["usage"])["completion_tokens"] > 0
    assert load_from_disk(str(out / "dataset"))["candidates"][0] == row["candidates"]
    assert (out / "README.md").read_text().count("openai:fake") >= 1
    # Re-running the finished job sends nothing.
    fake_openai.reset_log()
    again = _run(_args(fake_openai, gec_file, out, cache))
    assert fake_openai.requests == [] and again["cached_samples"] == 120 and again["completed"] == 30
    # The API key is nowhere on disk.
    for folder in (out, cache.parent):
        for path in folder.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), f"API key leaked into {path}"


def test_dry_run_and_budget_abort_send_nothing(fake_openai, gec_file, tmp_path, capsys):
    args = _args(fake_openai, gec_file, tmp_path / "o", tmp_path / "c.sqlite")
    est = _run(args + ["--dry_run", "true"])
    assert (
        est["dry_run"]
        and est["missing_samples"] == 120
        and "Sentence: she go to school 0 ." in capsys.readouterr().out
    )
    priced = args + ["--price_input_per_mtok", "100", "--price_output_per_mtok", "100", "--max_cost", "0.0001"]
    assert _run(priced)["aborted"] == "max_cost"
    assert fake_openai.requests == [] and not (tmp_path / "o" / "data.jsonl").exists()


def test_shards_merge_in_original_order_and_failures_file(fake_openai, gec_file, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    for k in (1, 0):  # finishing order must not matter
        _run(_args(fake_openai, gec_file, out, cache, "--shard", f"{k}/2"))
    merged = _run(_args(fake_openai, gec_file, out, cache, "--num_shards", "2", "--merge", "true"))
    rows = read_jsonl(out / "data.jsonl")
    assert [r["id"] for r in rows] == [f"s{i}" for i in range(30)] and merged["completed"] == 30
    # Failures: every request fails -> recorded per item, nothing written as a row.
    fake_openai.set_faults(1.0, ("500",))
    fail_out = tmp_path / "fail"
    summary = _run(
        _args(fake_openai, gec_file, fail_out, tmp_path / "c2.sqlite", "--max_retries", "0", "--max_items", "3")
    )
    failures = read_jsonl(fail_out / "failures.jsonl")
    assert summary["failed"] == 3 and [f["item_id"] for f in failures] == ["s0", "s1", "s2"]
    assert failures[0]["error_type"] == "InternalServerError" and failures[0]["attempts"] == 1


def test_push_to_fake_hub(fake_openai, fake_hub, gec_file, tmp_path):
    out = tmp_path / "out"
    _run(
        _args(fake_openai, gec_file, out, tmp_path / "c.sqlite", "--max_items", "4")
        + ["--push_to_hub", "true", "--hub_repo_id", "me/gec-candidates", "--hub_token", fake_hub.token]
    )
    files = fake_hub.files("me/gec-candidates", repo_type="dataset")
    assert {"README.md", "data/train-00000-of-00001.parquet", "failures/train-00000-of-00001.parquet"} <= set(files)
    assert fake_hub.token.encode() not in files["extras/config.json"]
    assert all(fake_hub.token.encode() not in content for content in files.values())


def test_sigkill_mid_run_then_resume_resends_nothing_answered(fake_openai, gec_file, tmp_path):
    fake_openai.latency = 0.05
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    args = _args(fake_openai, gec_file, out, cache, "--max_concurrency", "2")
    args.remove("--api_key")
    args.remove(SECRET)  # the key comes from the environment this time
    env = {**os.environ, "OPENAI_API_KEY": SECRET, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "data_gen/candidates.py", *args], cwd=REPO, env=env)
    deadline = time.time() + 120
    while len(fake_openai.requests) < 20 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "job finished before it could be killed: raise the latency"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    answered = sum(fake_openai.answered_counts().values())
    with GenerationCache(cache) as reopened:  # opening recovers the journaled answers the kill left uncommitted
        reopened.flush()
    with sqlite3.connect(cache) as conn:  # what survived the kill: one sample-0 row per completed request
        committed = conn.execute("SELECT COUNT(*) FROM generations WHERE sample_index = 0").fetchone()[0]
    assert committed >= 10
    assert committed >= answered - 2, "every answer the job had received survived (at most 2 were in transit)"
    before = len(fake_openai.requests)
    done = subprocess.run([sys.executable, "data_gen/candidates.py", *args], cwd=REPO, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(fake_openai.requests) - before == 60 - committed, "a request answered before the kill was re-sent"
    rows = read_jsonl(out / "data.jsonl")
    assert len(rows) == 30 and all(len(r["candidates"]) == 4 for r in rows)


def test_batch_mode_cli_killed_while_polling_resumes_the_saved_batch(fake_openai, gec_file, tmp_path):
    # `python data_gen/candidates.py --backend openai --mode batch ...`, killed -9 while its batch runs; the
    # re-run polls the saved batch id (in <output_dir>/openai_batches) and submits nothing again.
    api = fake_openai.batch
    api.hold = True
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    args = _args(fake_openai, gec_file, out, cache, "--mode", "batch", "--batch_poll_interval", "0.05")
    args += ["--batch_poll_max_interval", "0.1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "data_gen/candidates.py", *args], cwd=REPO, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        states = [json.loads(p.read_text()) for p in (out / "openai_batches").glob("batch-*.json")]
        if states and all(s["batch_id"] for s in states) and api.calls("GET", "/v1/batches/") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(api.batches) == 1 and fake_openai.requests == []
    api.hold = False
    summary = _run(args)
    assert summary["completed"] == 30 and summary["failed"] == 0
    assert len(api.batches) == 1 and api.calls("POST", "/v1/files") == 1, "the restart submitted the batch again"
    ids = api.submitted_custom_ids()
    assert len(ids) == len(set(ids)) == 60 and fake_openai.requests == []
    rows = read_jsonl(out / "data.jsonl")
    assert len(rows) == 30 and all(len(r["candidates"]) == 4 and all(r["candidates"]) for r in rows)
    # Same cache rows as online mode: the online job on this cache is free.
    online = _run(_args(fake_openai, gec_file, tmp_path / "online", cache))
    assert online["cached_samples"] == 120 and fake_openai.requests == []
