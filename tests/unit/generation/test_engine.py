"""Generation engine: cache reuse (zero calls on re-run, top-up of k), budgets, failures, dry-run plan, flushes."""

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

from toolkit.generation import engine
from toolkit.generation.cache import GenerationCache, cache_keys
from toolkit.generation.engine import plan_cost, run_generation
from toolkit.generation.items import BudgetExceededError, WorkItem
from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher
from toolkit.teachers.base import Generation, Teacher
from toolkit.testing.openai_process import start_server_process
from toolkit.testing.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[3]


def _teacher(server, **kw):
    cfg = TeacherConfig(backend="openai", model="fake", base_url=server.base_url, api_key="k", **kw)
    teacher = load_teacher(cfg)
    teacher.retry_initial_wait = 0.01
    return teacher


def _items(n_items=10, n=2):
    return [
        WorkItem(f"i{k}", [GenerationRequest(prompt=f"p{k} " * 10, n=n, seed=0, max_tokens=20)])
        for k in range(n_items)
    ]


def test_rerun_makes_zero_calls_and_returns_same_texts(fake_openai, tmp_path):
    teacher = _teacher(fake_openai)
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        first, s1 = run_generation(_items(), teacher, cache, progress=False)
        calls = len(fake_openai.requests)
        assert calls == 10 and s1.new_samples == 20 and s1.completed == 10
        again, s2 = run_generation(_items(), teacher, cache, progress=False)
    assert len(fake_openai.requests) == calls, "a finished job must make zero teacher calls"
    assert s2.cached_samples == 20 and s2.new_samples == 0 and s2.requests_sent == 0
    assert [[g.text for g in o.generations[0]] for o in again] == [[g.text for g in o.generations[0]] for o in first]


def test_asking_k5_after_k4_pays_only_for_the_fifth(fake_openai, tmp_path):
    teacher = _teacher(fake_openai)
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        four, _ = run_generation(_items(3, n=4), teacher, cache, progress=False)
        fake_openai.reset_log()
        five, s = run_generation(_items(3, n=5), teacher, cache, progress=False)
    assert s.cached_samples == 12 and s.new_samples == 3
    assert [r.n for r in fake_openai.requests] == [1, 1, 1]
    for a, b in zip(four, five):
        texts = [g.text for g in b.generations[0]]
        assert texts[:4] == [g.text for g in a.generations[0]]
        assert texts[4] not in texts[:4], "the topped-up sample must not repeat a cached one (derived seed)"


def test_budget_aborts_before_spending(fake_openai, tmp_path):
    teacher = _teacher(fake_openai, price_input_per_mtok=1000.0, price_output_per_mtok=1000.0)
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        est = plan_cost(_items(), teacher, cache)["estimated_cost_usd"]
        assert est > 0
        with pytest.raises(BudgetExceededError, match="nothing was sent"):
            run_generation(_items(), teacher, cache, max_cost=est * 0.5, progress=False)
    assert fake_openai.requests == []


def test_budget_stops_cleanly_mid_run_when_spend_outruns_the_estimate(fake_openai, tmp_path):
    # The pre-run estimate passes, but real usage is 4x the estimate (prompt tokens under-estimated): the engine
    # must stop sending once spent + reserved would cross max_cost, keep what finished, and resume later.
    teacher = _teacher(fake_openai, price_input_per_mtok=1000.0, price_output_per_mtok=1000.0, max_concurrency=1)
    teacher.estimate_prompt_tokens = lambda request: 1
    items = [
        WorkItem(f"i{k}", [GenerationRequest(prompt=f"p{k} " * 10, n=2, seed=0, max_tokens=1)]) for k in range(10)
    ]
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        budget = plan_cost(items, teacher, cache)["estimated_cost_usd"]
        outcomes, s = run_generation(items, teacher, cache, max_cost=budget, progress=False)
        assert s.stopped_reason == "max_cost"
        assert 1 <= s.completed < 10 and s.completed + s.pending == 10 and s.failed == 0
        assert len(fake_openai.requests) == s.requests_sent == s.completed
        assert s.cost_usd <= budget + 0.012 + 1e-9, "overshoot is bounded by the one in-flight request"
        assert [o.ok for o in outcomes] == [True] * s.completed + [False] * s.pending
        _, s2 = run_generation(items, teacher, cache, progress=False)
    assert s2.completed == 10 and s2.cached_samples == 2 * s.completed


def test_failures_are_recorded_and_retried_on_rerun(fake_openai, tmp_path):
    fake_openai.set_faults(1.0, ("500",))
    teacher = _teacher(fake_openai, max_retries=1)
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        outcomes, s = run_generation(_items(4), teacher, cache, progress=False)
        assert s.failed == 4 and s.completed == 0
        assert outcomes[0].error["error_type"] == "InternalServerError" and outcomes[0].error["attempts"] == 2
        fake_openai.set_faults(0.0)
        fake_openai.reset_log()
        _, s2 = run_generation(_items(4), teacher, cache, progress=False)
    assert s2.completed == 4 and len(fake_openai.requests) == 4


def test_duplicate_item_ids_rejected(fake_openai, tmp_path):
    items = _items(2)
    items[1].item_id = items[0].item_id
    with GenerationCache(":memory:") as cache, pytest.raises(ValueError, match="duplicate item id"):
        run_generation(items, _teacher(fake_openai), cache, progress=False)


class _FlakyTeacher(Teacher):
    """Answers the first ``good`` requests, then raises (a bug, Ctrl-C) in the middle of the run."""

    id = "flaky:model"

    def __init__(self, good: int, exc: BaseException):
        self.good, self.exc = good, exc

    def generate_each(self, requests, on_result, admit=None):
        for i, req in enumerate(requests):
            if i == self.good:
                raise self.exc
            on_result(i, [Generation(f"out {i}.{j}") for j in range(req.n)])


@pytest.mark.parametrize("exc", [RuntimeError("teacher bug"), KeyboardInterrupt()])
def test_cache_is_flushed_when_the_run_raises(tmp_path, exc):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path, max_batch=1000, max_delay=30.0) as cache:  # only a flush commits
        with pytest.raises(type(exc)):
            run_generation(_items(10), _FlakyTeacher(6, exc), cache, progress=False)
        with sqlite3.connect(path) as conn:  # an independent reader, before the cache is closed
            assert conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 6 * 2


def test_cache_is_flushed_when_the_run_returns(tmp_path, fake_openai):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path, max_batch=1000, max_delay=30.0) as cache:
        _, s = run_generation(_items(5), _teacher(fake_openai), cache, progress=False)
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == s.new_samples == 10


_KILL_JOB = """
import sys
from toolkit.generation.cache import GenerationCache
from toolkit.generation.engine import run_generation
from toolkit.generation.items import WorkItem
from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher

base_url, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = TeacherConfig(
    backend="openai", model="fake", base_url=base_url, api_key="k", max_concurrency=64, cache_namespace="fake"
)
items = [WorkItem(f"i{k}", [GenerationRequest(prompt=f"kill p{k}", seed=0)]) for k in range(count)]
# max_delay=60: only a full group of 64 commits, so up to 63 received answers wait for their commit at the kill.
with GenerationCache(path, max_delay=60.0) as cache:
    run_generation(items, load_teacher(config), cache, progress=False)
"""


def test_sigkill_at_concurrency_64_never_reasks_a_received_answer(tmp_path):
    # The server answers the first 200 requests and holds every later one, so at the kill the job has received
    # exactly those 200 answers (8 more than three full commit groups of 64) and has 64 requests in flight.
    answered_before_kill, total = 200, 400
    server = start_server_process(latency=0.05, answer_limit=answered_before_kill)
    script, path = tmp_path / "job.py", tmp_path / "c.sqlite"
    script.write_text(_KILL_JOB)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), server.base_url, str(path), str(total)], cwd=REPO, env=env)
    try:
        deadline = time.time() + 60
        # A worker sends its next request only after handing the previous answer to the cache: once the server
        # has seen 64 requests beyond the answered ones, every received answer went through the cache's submit.
        while server.request_count() < answered_before_kill + 64 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "job finished (or died) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        asked, answered = server.prompt_log()
    finally:
        proc.kill()
        server.stop()
    assert sum(answered.values()) == answered_before_kill
    assert sum(asked.values()) - answered_before_kill == 64, "the kill should find 64 requests in flight"
    items = [WorkItem(f"i{k}", [GenerationRequest(prompt=f"kill p{k}", seed=0)]) for k in range(total)]
    with FakeOpenAIServer() as restarted, GenerationCache(path) as cache:
        config = TeacherConfig(
            backend="openai",
            model="fake",
            base_url=restarted.base_url,
            api_key="k",
            max_concurrency=64,
            cache_namespace="fake",
        )
        _, summary = run_generation(items, load_teacher(config), cache, progress=False)
        reasked = set(restarted.prompt_counts())
    assert summary.completed == total
    assert summary.cached_samples == answered_before_kill
    assert not reasked & set(answered), f"{len(reasked & set(answered))} received answers were asked again"


def test_on_progress_reports_only_committed_answers(fake_openai, tmp_path):
    # "Acknowledged" (toolkit/generation.py): an answer is counted done only once its cache write has committed.
    path, seen = tmp_path / "c.sqlite", []
    items = _items(10)
    teacher = _teacher(fake_openai, max_concurrency=2)

    def check(p):  # an independent reader: what a job restarted at this instant would find
        with sqlite3.connect(path) as conn:
            on_disk = {key for (key,) in conn.execute("SELECT key FROM generations")}
        seen.append((p.samples_done, len(on_disk), getattr(p, "completed_items", ()), on_disk))

    with GenerationCache(path, max_batch=3, max_delay=30.0) as cache:  # commits lag: full batch or flush only
        _, s = run_generation(items, teacher, cache, progress=False, on_progress=check)
    assert s.completed == 10 and seen[-1][0] == 20
    for samples_done, on_disk, _, _ in seen:
        assert samples_done <= on_disk, f"progress showed {samples_done} samples with only {on_disk} on disk"
    by_id = {item.item_id: item for item in items}
    for _, _, completed, keys in seen:
        for item_id in completed:
            assert set(cache_keys(teacher.id, by_id[item_id].requests[0], range(2))) <= keys
    assert sorted(i for _, _, completed, _ in seen for i in completed) == sorted(by_id)


_ACK_JOB = """
import json, sys
from toolkit.generation.cache import GenerationCache, cache_keys
from toolkit.generation.engine import run_generation
from toolkit.generation.items import WorkItem
from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher

base_url, path, log_path = sys.argv[1:4]
teacher = load_teacher(TeacherConfig(backend="openai", model="fake", base_url=base_url, api_key="k", max_concurrency=4))
items = [WorkItem(f"i{k}", [GenerationRequest(prompt=f"ack p{k}", n=2, seed=0)]) for k in range(400)]
log = open(log_path, "a")

def on_progress(p):  # what a job shows its user; flushed so that the line survives the kill
    done = list(getattr(p, "completed_items", ()))
    log.write(json.dumps({"samples_done": p.samples_done, "completed": done}) + "\\n")
    log.flush()

with GenerationCache(path, max_batch=8, max_delay=30.0) as cache:
    run_generation(items, teacher, cache, progress=False, on_progress=on_progress)
"""


def _acknowledged(log_path):
    """(highest samples_done, completed item ids) from the progress lines the killed job wrote."""
    best, ids = 0, set()
    for line in log_path.read_text().splitlines() if log_path.exists() else []:
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut by the kill
            continue
        best, ids = max(best, rec["samples_done"]), ids | set(rec["completed"])
    return best, ids


def test_sigkill_never_reasks_an_acknowledged_answer(fake_openai, tmp_path):
    # Kill window: everything the engine had acknowledged (progress, completed items) before a kill -9 is on disk,
    # so the restart asks the teacher for none of it. max_delay=30 s: only a full batch of 8 commits, so a
    # job that acknowledged answers before committing them would be caught with up to 7 of them.
    fake_openai.latency = 0.05
    script, path, log_path = tmp_path / "job.py", tmp_path / "c.sqlite", tmp_path / "progress.jsonl"
    script.write_text(_ACK_JOB)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, str(script), fake_openai.base_url, str(path), str(log_path)]
    proc = subprocess.Popen(argv, cwd=REPO, env=env)
    try:
        deadline = time.time() + 120
        while _acknowledged(log_path)[0] < 2 * 12 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, "job finished (or died) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    samples_done, acked = _acknowledged(log_path)
    received = len(fake_openai.requests)
    with sqlite3.connect(path) as conn:
        on_disk = conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    assert 24 <= samples_done <= on_disk, f"the job showed {samples_done} samples done, {on_disk} survived the kill"
    assert acked, "no completed item was reported before the kill: the test proves nothing"
    items = [WorkItem(f"i{k}", [GenerationRequest(prompt=f"ack p{k}", n=2, seed=0)]) for k in range(400)]
    with GenerationCache(path) as cache:
        _, s = run_generation(items, _teacher(fake_openai, max_concurrency=4), cache, progress=False)
    assert s.completed == 400
    reasked = {r.prompt for r in fake_openai.requests[received:]}
    assert not reasked & {f"ack p{i[1:]}" for i in acked}, "an acknowledged answer was asked for again"


class _GreedyFirstTeacher(Teacher):
    """Answers every greedy request before any sampled one, like the hf teacher's grouping by sampling settings.

    ``seen_before_samples`` records what the progress bar and callback showed when the sampled phase began.
    """

    id = "greedy-first:model"

    def __init__(self, progress_log, bars):
        self.progress_log, self.bars, self.seen_before_samples = progress_log, bars, None

    def generate_each(self, requests, on_result, admit=None):
        order = sorted(range(len(requests)), key=lambda i: not requests[i].is_greedy)
        for i in order:
            if not requests[i].is_greedy and self.seen_before_samples is None:
                self.seen_before_samples = (list(self.progress_log), self.bars[0].n)
            admit(i)
            on_result(i, [Generation(f"out {i}.{j}") for j in range(requests[i].n)])


def test_progress_counts_samples_so_it_moves_before_any_item_completes(monkeypatch):
    bars = []

    class RecordingBar:
        def __init__(self, *args, total=None, initial=0, **kwargs):
            self.total = total
            self.n = initial
            bars.append(self)

        def update(self, k=1):
            self.n += k

        def set_postfix_str(self, *args, **kwargs):
            pass

        def close(self):
            pass

    monkeypatch.setattr(engine, "tqdm", RecordingBar)
    log = []
    items = [
        WorkItem(f"i{k}", [GenerationRequest(prompt=f"g{k}", temperature=0.0), GenerationRequest(prompt=f"g{k}", n=3)])
        for k in range(5)
    ]
    teacher = _GreedyFirstTeacher(log, bars)
    with GenerationCache(":memory:") as cache:
        cache.put(teacher.id, items[0].requests[1], 0, Generation("cached"))  # one sample is there already
        _, summary = run_generation(items, teacher, cache, progress=True, on_progress=log.append)
    assert summary.completed == 5
    (bar,) = bars
    assert bar.total == 20 and bar.n == 20, "the bar counts samples (cached ones included)"
    progress_then, bar_then = teacher.seen_before_samples
    assert bar_then == 1 + 5, "after the greedy phase the bar shows its 5 samples (+1 cached)"
    assert [p.samples_done for p in progress_then] == [2, 3, 4, 5, 6]
    assert all(p.items_done == 0 for p in progress_then), "no item was complete yet, and progress still moved"
    assert (log[-1].samples_done, log[-1].samples_total, log[-1].items_done, log[-1].items_total) == (20, 20, 5, 5)
