"""GenerationCache: key stability / sensitivity, per-sample storage, persistence, group-commit writer thread."""

from __future__ import annotations

import sqlite3
import time

import pytest

from toolkit.generation.cache import CacheWriteError, GenerationCache, cache_key, cache_keys
from toolkit.teachers.base import Generation, GenerationRequest, Usage

MSGS = [{"role": "user", "content": "Fix: she go home"}]


def _req(**kw):
    base = {"messages": MSGS, "n": 4, "temperature": 0.7, "top_p": 0.9, "max_tokens": 32, "seed": 1}
    return GenerationRequest(**{**base, **kw})


def test_key_is_stable_and_ignores_n_and_offset():
    a = cache_key("openai:m@h", _req(), 2)
    assert a == cache_key("openai:m@h", _req(), 2)
    assert len(a) == 64
    # A sample is identified by its index: how many were asked for in one call does not matter.
    assert a == cache_key("openai:m@h", _req(n=7, sample_offset=3), 2)


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.8},
        {"top_p": 1.0},
        {"max_tokens": 33},
        {"seed": 2},
        {"stop": ["\n"]},
        {"messages": [{"role": "user", "content": "Fix: she go home "}]},
        {"messages": None, "prompt": "Fix: she go home"},
    ],
)
def test_key_changes_with_content_and_sampling(change):
    assert cache_key("t", _req(), 0) != cache_key("t", _req(**change), 0)


def test_key_changes_with_teacher_and_index():
    assert cache_key("t1", _req(), 0) != cache_key("t2", _req(), 0)
    assert cache_key("t", _req(), 0) != cache_key("t", _req(), 1)


def test_put_get_per_sample_and_persistence(tmp_path):
    path = tmp_path / "c" / "gen.sqlite"
    req = _req()
    with GenerationCache(path) as cache:
        cache.put_many("t", req, 0, [Generation("a", "stop", Usage(5, 2)), Generation("b", "length", Usage(0, 3))])
        got = cache.get_many("t", req, range(4))
        assert [g.text if g else None for g in got] == ["a", "b", None, None]
        assert got[0].usage == Usage(5, 2) and got[1].finish_reason == "length"
    # Committed per request: a new connection (a restarted job) sees the rows.
    with GenerationCache(path) as cache:
        assert len(cache) == 2
        cache.put("t", req, 2, Generation("c", "stop", Usage(0, 1), logprobs=[-0.5]))
        assert cache.get("t", req, 2).logprobs == [-0.5]
        assert cache.count("t") == 3 and cache.count("other") == 0


def test_read_only_rejects_writes(tmp_path):
    GenerationCache(tmp_path / "x.sqlite").close()
    with GenerationCache(tmp_path / "x.sqlite", read_only=True) as cache, pytest.raises(PermissionError):
        cache.put("t", _req(), 0, Generation("a"))


# -- group-commit writer thread ------------------------------------------------------------------------------
def _count_on_disk(path) -> int:
    """Rows committed to the file, seen by an independent connection (what a restarted job would see)."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]


def _gen(i):
    return [Generation(f"text {i}", "stop", Usage(1, 1))]


def test_submit_is_group_committed_and_flush_makes_rows_visible(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = GenerationCache(path, max_batch=1000, max_delay=30.0)  # nothing triggers a commit but a flush
    try:
        for i in range(10):
            cache.submit("t", _req(seed=i), 0, _gen(i))
        assert _count_on_disk(path) == 0, "rows were committed one by one instead of in a group"
        assert cache._writer.pending == 10
        cache.flush()
        assert _count_on_disk(path) == 10 and cache._writer.pending == 0
        assert cache._writer.commits == 1
    finally:
        cache.close()


def test_close_flushes_and_reads_see_own_writes(tmp_path):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path, max_batch=1000, max_delay=30.0) as cache:
        cache.submit("t", _req(), 0, [Generation("a"), Generation("b")])
        assert [g.text for g in cache.get_many("t", _req(), range(2))] == ["a", "b"]  # get flushes first
        cache.submit("t", _req(), 2, [Generation("c")])
        assert len(cache) == 3
        cache.submit("t", _req(), 3, [Generation("d")])
    assert _count_on_disk(path) == 4  # close() flushed the last one


def test_commit_after_max_delay_without_flush(tmp_path):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path, max_batch=1000, max_delay=0.02) as cache:
        cache.submit("t", _req(), 0, _gen(0))
        deadline = time.time() + 20
        while _count_on_disk(path) == 0 and time.time() < deadline:
            time.sleep(0.01)
        assert _count_on_disk(path) == 1, "the writer never committed on its own"


def test_ordering_later_submission_of_a_key_wins(tmp_path):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path, max_batch=2, max_delay=30.0) as cache:  # several batches
        for version in range(5):
            cache.submit("t", _req(), 0, [Generation(f"v{version}")])
            cache.submit("t", _req(seed=99), 0, [Generation(f"other{version}")])
        cache.flush()
        assert cache.get("t", _req(), 0).text == "v4" and cache.get("t", _req(seed=99), 0).text == "other4"
    assert _count_on_disk(path) == 2


def test_uncommitted_requests_never_exceed_max_batch(tmp_path):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path, max_batch=3, max_delay=30.0) as cache:
        for i in range(20):
            cache.submit("t", _req(seed=i), 0, _gen(i))
            assert cache._writer.pending <= 3
            # The documented kill -9 bound: everything but the last <= max_batch requests is on disk.
            assert _count_on_disk(path) >= i + 1 - 3
    assert _count_on_disk(path) == 20


def test_samples_of_one_request_are_committed_together(tmp_path):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path, max_batch=2, max_delay=30.0) as cache:
        for i in range(7):
            cache.submit("t", _req(seed=i), 0, [Generation(f"{i}-{j}") for j in range(4)])
            assert _count_on_disk(path) % 4 == 0
    assert _count_on_disk(path) == 28


def test_commit_failure_propagates_to_submit_flush_and_close(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = GenerationCache(path, max_batch=1000, max_delay=30.0)
    cache.submit("t", _req(), 0, _gen(0))
    cache.flush()
    with sqlite3.connect(path) as conn:  # sabotage: the writer's next INSERT fails
        conn.execute("DROP TABLE generations")
    cache.submit("t", _req(seed=1), 0, _gen(1))
    with pytest.raises(CacheWriteError, match="commit failed") as info:
        cache.flush()
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    with pytest.raises(CacheWriteError):
        cache.submit("t", _req(seed=2), 0, _gen(2))  # the writer accepts nothing after a failure
    with pytest.raises(CacheWriteError):
        cache.close()


def test_memory_cache_submit_writes_synchronously():
    with GenerationCache(":memory:") as cache:
        cache.submit("t", _req(), 0, _gen(0))
        assert cache._writer is None and cache.get("t", _req(), 0).text == "text 0"


def test_put_many_after_submit_keeps_order_and_is_committed(tmp_path):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path, max_batch=1000, max_delay=30.0) as cache:
        cache.submit("t", _req(), 0, [Generation("old")])
        cache.put("t", _req(), 0, Generation("new"))  # synchronous: committed on return, after the submit
        assert _count_on_disk(path) == 1
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT text FROM generations").fetchone()[0] == "new"


def test_cache_keys_match_cache_key():
    assert cache_keys("t", _req(), [0, 3]) == [cache_key("t", _req(), 0), cache_key("t", _req(), 3)]


def test_on_commit_runs_after_the_commit_once_per_group(tmp_path):
    # The engine acknowledges answers in this callback, so it must never run before the rows are on disk.
    path = tmp_path / "c.sqlite"
    calls = []

    def on_commit(tokens):
        calls.append((list(tokens), _count_on_disk(path)))  # what a restarted job would see at that moment

    with GenerationCache(path, max_batch=3, max_delay=30.0) as cache:  # only a full batch or a flush commits
        for i in range(7):
            cache.submit("t", _req(seed=i), 0, _gen(i), on_commit=on_commit, token=i)
        assert calls == [([0, 1, 2], 3), ([3, 4, 5], 6)], "one call per group commit, after it, tokens in order"
        cache.flush()
        assert calls[-1] == ([6], 7), "flush returns only after the callbacks of what it committed ran"


def test_on_commit_failure_does_not_stop_the_writer(tmp_path):
    path = tmp_path / "c.sqlite"

    def broken(tokens):
        raise RuntimeError("callback bug")

    with GenerationCache(path, max_batch=1, max_delay=30.0) as cache:
        cache.submit("t", _req(seed=1), 0, _gen(1), on_commit=broken, token=1)
        cache.submit("t", _req(seed=2), 0, _gen(2))
        cache.flush()
    assert _count_on_disk(path) == 2


def test_memory_cache_on_commit_is_synchronous():
    got = []
    with GenerationCache(":memory:") as cache:
        cache.submit("t", _req(), 0, _gen(0), on_commit=got.extend, token="a")
        assert got == ["a"] and cache.get("t", _req(), 0).text == "text 0"


def test_submit_with_precomputed_keys_stores_under_them(tmp_path):
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        keys = cache_keys("t", _req(), [2, 3])
        cache.submit("t", _req(), 2, [Generation("c"), Generation("d")], keys=keys)
        assert [g.text for g in cache.get_many("t", _req(), [2, 3])] == ["c", "d"]


OLD_SCHEMA = """
CREATE TABLE generations (
    key TEXT PRIMARY KEY, teacher_id TEXT NOT NULL, sample_index INTEGER NOT NULL, text TEXT NOT NULL,
    finish_reason TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    logprobs TEXT, created_at REAL NOT NULL
)
"""


def test_a_cache_file_from_before_reasoning_traces_keeps_its_rows_and_gains_the_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_SCHEMA)
        key = cache_key("t", _req(), 0)
        conn.execute("INSERT INTO generations VALUES (?,?,?,?,?,?,?,?,?)", (key, "t", 0, "old", "stop", 1, 2, None, 0))
    with GenerationCache(path, read_only=True) as cache:  # read-only: readable as it is, nothing altered
        assert cache.get("t", _req(), 0).text == "old"
    with GenerationCache(path) as cache:
        assert cache.get("t", _req(), 0).reasoning_content is None
        cache.put("t", _req(), 1, Generation("new", reasoning_content="because"))
        assert cache.get("t", _req(), 1).reasoning_content == "because"
