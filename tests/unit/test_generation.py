"""Generation engine: cache reuse (zero calls on re-run, top-up of k), budgets, failures, dry-run plan."""

from __future__ import annotations

import pytest

from toolkit.cache import GenerationCache
from toolkit.generation import BudgetExceededError, WorkItem, plan_cost, run_generation
from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher


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
