"""OpenAI-compatible teacher against the fake server: n, fan-out, retries with Retry-After, faults, secrets."""

from __future__ import annotations

import sys

import pytest

from toolkit.generation.cache import GenerationCache
from toolkit.generation.engine import run_generation
from toolkit.generation.items import WorkItem
from toolkit.teachers import GenerationRequest, TeacherConfig, TeacherError, load_teacher
from toolkit.teachers.openai import make_http_client
from toolkit.teachers.openai_request import is_reasoning_model
from toolkit.testing.openai_server import FakeOpenAIServer

SECRET = "sk-test-SECRET-must-not-leak-1234"


def _teacher(server, **kw):
    cfg = TeacherConfig(
        **{"backend": "openai", "model": "fake-model", "base_url": server.base_url, "api_key": SECRET, **kw}
    )
    teacher = load_teacher(cfg)
    teacher.retry_initial_wait = 0.01  # keep exponential backoff short in tests
    return teacher


def test_id_names_backend_model_host_and_never_the_key(fake_openai):
    teacher = _teacher(fake_openai)
    assert teacher.id == f"openai:fake-model@127.0.0.1:{fake_openai.port}"
    assert SECRET not in teacher.id and SECRET not in repr(teacher)


def test_missing_key_without_base_url_is_actionable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        load_teacher(TeacherConfig(backend="openai", model="gpt-4o-mini"))


def test_chat_and_completion_return_n_distinct_samples(fake_openai):
    teacher = _teacher(fake_openai)
    chat = GenerationRequest(messages=[{"role": "user", "content": "hi"}], n=3, seed=7, max_tokens=12)
    comp = GenerationRequest(prompt="complete me", n=2, seed=7, max_tokens=12)
    out = teacher.generate([chat, comp])
    assert [len(o) for o in out] == [3, 2]
    assert len({g.text for g in out[0]}) == 3
    assert sum(g.usage.prompt_tokens for g in out[0]) > 0 and all(g.finish_reason == "stop" for g in out[0])
    assert len(fake_openai.requests) == 2 and {r.path for r in fake_openai.requests} == {
        "/v1/chat/completions",
        "/v1/completions",
    }


def test_http_transport_is_validated_and_aiohttp_missing_is_actionable(monkeypatch):

    with pytest.raises(ValueError, match="http_transport"):
        TeacherConfig(backend="openai", http_transport="curl")
    assert make_http_client("httpx") is None
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if the extra were not installed
    assert make_http_client("auto") is None  # quietly the SDK default
    with pytest.raises(ImportError, match=r"openai\[aiohttp\]"):
        make_http_client("aiohttp")


def test_fan_out_when_server_ignores_n(fake_openai):
    fake_openai.ignore_n = True
    teacher = _teacher(fake_openai)
    out = teacher.generate([GenerationRequest(prompt=f"q{i}", n=4, seed=3) for i in range(3)])
    assert [len(o) for o in out] == [4, 4, 4]
    assert all(len({g.text for g in o}) == 4 for o in out), "fan-out samples must differ (derived seeds)"
    assert teacher.server_ignores_n
    # First request discovers it (1 + 3 calls); the others fan out at once (4 calls each).
    assert len(fake_openai.requests) == 12


TRANSPORTS = pytest.mark.parametrize("transport", ["httpx", "aiohttp"])


@TRANSPORTS
def test_retry_after_is_honoured(fake_openai, transport):
    fake_openai.set_faults(1.0, ("429",), retry_after=0.6)  # above any backoff (0.01 + jitter <= 0.5)
    teacher = _teacher(fake_openai, max_retries=1, http_transport=transport)
    waits, wait = [], teacher._wait
    teacher._wait = lambda state: waits.append(wait(state)) or waits[-1]  # the waits chosen, not the wall clock
    with pytest.raises(TeacherError) as info:
        teacher.generate([GenerationRequest(prompt="x")])
    assert info.value.attempts == 2 and info.value.error_type == "RateLimitError"
    assert len(fake_openai.requests) == 2
    assert 0.6 <= waits[0] <= 0.6 + 0.1 * 0.6 + 0.01, "the retry waits Retry-After (plus its small jitter)"


@TRANSPORTS
def test_client_errors_are_not_retried(fake_openai, transport):
    teacher = _teacher(fake_openai, http_transport=transport)
    teacher.base_url = fake_openai.base_url.replace("/v1", "/nope")
    with pytest.raises(TeacherError) as info:
        teacher.generate([GenerationRequest(prompt="x")])
    assert info.value.attempts == 1 and info.value.error_type == "NotFoundError"


@TRANSPORTS
@pytest.mark.parametrize("kind", ["429", "500", "timeout", "malformed", "empty"])
def test_each_fault_kind_is_retried_to_success(fake_openai, kind, transport):
    fake_openai.set_faults(0.5, (kind,), retry_after=0.01, hang_seconds=3)
    teacher = _teacher(fake_openai, max_retries=8, request_timeout=0.5, http_transport=transport)
    out = teacher.generate([GenerationRequest(prompt=f"p{i}", seed=1) for i in range(6)])
    assert all(len(o) == 1 and o[0].text for o in out)
    assert any(r.fault == kind for r in fake_openai.requests), "the fault was never injected"


def test_faults_at_10_percent_every_item_completes_or_is_recorded(fake_openai, tmp_path):
    fake_openai.set_faults(0.1, retry_after=0.01, hang_seconds=3)
    teacher = _teacher(fake_openai, max_retries=2, request_timeout=0.5, max_concurrency=16)
    items = [WorkItem(f"i{k}", [GenerationRequest(prompt=f"prompt {k}", n=2, seed=0)]) for k in range(120)]
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        outcomes, summary = run_generation(items, teacher, cache, progress=False)
        assert summary.completed + summary.failed == 120 and summary.pending == 0
        for o in outcomes:
            assert o.ok != (o.error is not None)
            if o.error:
                assert o.error["attempts"] == 3 and o.error["error_type"]
        # None duplicated: a successful prompt is answered (status 200, no fault) exactly once.
        ok_calls = [r.prompt for r in fake_openai.requests if r.fault is None]
        assert len(ok_calls) == len(set(ok_calls)) == summary.completed
        assert len(cache) == 2 * summary.completed
        assert {r.fault for r in fake_openai.requests} >= {"429", "500", "malformed", "empty"}


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("o1", True),
        ("o3-mini", True),
        ("o4-mini-2025-04-16", True),
        ("gpt-5", True),
        ("gpt-5-nano", True),
        ("openai/o3", True),
        ("gpt-5-chat-latest", False),
        ("gpt-4o-mini", False),
        ("omni-7b", False),
    ],
)
def test_reasoning_models_are_detected_by_name(model, reasoning):

    assert is_reasoning_model(model) is reasoning


def test_reasoning_models_get_max_completion_tokens_and_default_sampling(fake_openai):
    # The fake answers 400 to max_tokens / temperature != 1 / stop for o-series names, as the real API does.
    fake_openai.responder = lambda prompt, index, seed, body: "Answer: 7\nQ: next question"
    teacher = _teacher(fake_openai, model="o4-mini")
    greedy = GenerationRequest(
        messages=[{"role": "user", "content": "q"}], temperature=0.0, max_tokens=40, stop=["\n"]
    )
    (gens,) = teacher.generate([greedy])
    body = fake_openai.requests[-1].body
    assert body["max_completion_tokens"] == 40 and "max_tokens" not in body
    assert not {"temperature", "top_p", "stop"} & set(body)
    assert gens[0].text == "Answer: 7" and gens[0].finish_reason == "stop", "stop sequences are cut client-side"
    # A plain chat model keeps max_tokens and its sampling parameters; reasoning_model overrides the name rule.
    _teacher(fake_openai, model="gpt-4o-mini").generate([greedy])
    assert fake_openai.requests[-1].body["max_tokens"] == 40 and fake_openai.requests[-1].body["temperature"] == 0.0
    _teacher(fake_openai, model="my-o-model", reasoning_model=True).generate([greedy])
    assert "max_completion_tokens" in fake_openai.requests[-1].body


def test_cache_namespace_survives_a_server_moving_to_another_port(fake_openai, tmp_path):
    items = [WorkItem(f"i{k}", [GenerationRequest(prompt=f"ns {k}", n=2, seed=0)]) for k in range(4)]
    first = _teacher(fake_openai, cache_namespace="lab-box")
    assert first.id == "openai:fake-model@lab-box"
    with FakeOpenAIServer() as moved, GenerationCache(tmp_path / "c.sqlite") as cache:
        assert moved.port != fake_openai.port
        _, s1 = run_generation(items, first, cache, progress=False)
        _, s2 = run_generation(items, _teacher(moved, cache_namespace="lab-box"), cache, progress=False)
        assert s1.new_samples == 8 and s2.cached_samples == 8 and moved.requests == [], "namespace: cache hit"
        _, s3 = run_generation(items, _teacher(moved), cache, progress=False)
        assert s3.new_samples == 8 and len(moved.requests) == 4, "without a namespace the host:port keys the cache"
    with pytest.raises(ValueError, match="cache_namespace"):
        TeacherConfig(backend="openai", cache_namespace="two words")
    with pytest.raises(ValueError, match="cache_namespace"):
        TeacherConfig(backend="hf", cache_namespace="box")
