"""GenerationCache: key stability / sensitivity, per-sample storage, persistence, no secrets."""

from __future__ import annotations

import pytest

from toolkit.cache import GenerationCache, cache_key
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
