"""The openai teacher's Batch API mode against the fake server's /v1/files and /v1/batches.

Covers: JSONL lines keyed by the cache key, same cache rows and texts as online mode, per-line errors as item
failures (never dropped, never duplicated), expired / failed batches, restarts that poll the saved batch instead
of submitting again (also when killed between ``batches.create`` and saving its id), batch prices.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from toolkit.generation.cache import GenerationCache, cache_key
from toolkit.generation.engine import plan_cost, run_generation
from toolkit.generation.items import WorkItem
from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher, openai_batch
from toolkit.teachers.openai_batch import BatchStore, OpenAIBatchTeacher, custom_id

SECRET = "sk-test-BATCH-secret-5555"


def _teacher(server, tmp_path, **kw):
    cfg = {
        "backend": "openai",
        "model": "fake",
        "base_url": server.base_url,
        "api_key": SECRET,
        "mode": "batch",
        "batch_dir": str(tmp_path / "batches"),
        "batch_poll_interval": 0.01,
        "batch_poll_max_interval": 0.02,
        **kw,
    }
    return load_teacher(TeacherConfig(**cfg))


def _items(n_items=8, tag="p"):
    """Per item: a greedy completion request and a chat request for 2 samples (two endpoints, two batches)."""
    return [
        WorkItem(
            f"i{k}",
            [
                GenerationRequest(prompt=f"{tag}{k} complete", n=1, temperature=0.0, seed=0, max_tokens=12),
                GenerationRequest(
                    messages=[{"role": "user", "content": f"{tag}{k} chat"}], n=2, seed=0, max_tokens=12
                ),
            ],
        )
        for k in range(n_items)
    ]


def _run(teacher, tmp_path, items=None):
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        return run_generation(items or _items(), teacher, cache, progress=False)


def _texts(outcomes):
    return [[[g.text for g in gens] for gens in o.generations] if o.ok else None for o in outcomes]


def test_batch_mode_fills_the_same_cache_as_online_and_reruns_free(fake_openai, tmp_path):
    teacher = _teacher(fake_openai, tmp_path)
    assert isinstance(teacher, OpenAIBatchTeacher) and teacher.id == f"openai:fake@127.0.0.1:{fake_openai.port}"
    outcomes, summary = _run(teacher, tmp_path)
    assert summary.completed == 8 and summary.failed == summary.pending == 0 and summary.new_samples == 24
    assert fake_openai.requests == [], "batch mode must not make online completion calls"
    api = fake_openai.batch
    assert len(api.batches) == 2 and api.calls("POST", "/v1/batches") == 2  # one per endpoint
    assert {b["endpoint"] for b in api.batches.values()} == {"/v1/completions", "/v1/chat/completions"}
    # custom_id = the cache key of the first sample (+ the sample count): answers map back in any later run.
    items = _items()
    expected = {custom_id(teacher.id, r) for it in items for r in it.requests}
    assert set(api.submitted_custom_ids()) == expected and len(api.submitted_custom_ids()) == 16
    assert {c.rsplit("-n", 1)[0] for c in expected} == {
        cache_key(teacher.id, r, 0) for it in items for r in it.requests
    }
    # The state file keeps the batch ids; the downloaded results are kept next to it.
    states = BatchStore(tmp_path / "batches").states()
    assert {s.batch_id for s in states} == set(api.batches) and all(s.reported for s in states)
    # Same texts as the online teacher (same cache identity): online mode on this cache now sends nothing.
    online = load_teacher(TeacherConfig(backend="openai", model="fake", base_url=fake_openai.base_url, api_key="k"))
    again, s2 = _run(online, tmp_path)
    assert fake_openai.requests == [] and s2.cached_samples == 24 and _texts(again) == _texts(outcomes)
    calls = len(api.api_calls)
    _, s3 = _run(teacher, tmp_path)
    assert len(api.api_calls) == calls and s3.requests_sent == 0
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), f"API key leaked into {path}"


def test_identical_requests_of_two_items_are_one_line(fake_openai, tmp_path):
    items = _items(3)
    items.append(WorkItem("copy", items[0].requests))
    outcomes, summary = _run(_teacher(fake_openai, tmp_path), tmp_path, items)
    assert summary.completed == 4 and _texts(outcomes)[3] == _texts(outcomes)[0]
    ids = fake_openai.batch.submitted_custom_ids()
    assert len(ids) == len(set(ids)) == 6


def test_line_errors_are_item_failures_never_dropped_or_duplicated(fake_openai, tmp_path):
    api = fake_openai.batch
    faults = {1: "error", 2: "500", 3: "malformed", 4: "drop"}
    api.line_fault = lambda index, line: faults.get(index) if line["url"] == "/v1/chat/completions" else None
    api.duplicate_lines = True  # every output line twice: must still be one result each
    outcomes, summary = _run(_teacher(fake_openai, tmp_path), tmp_path)
    assert summary.completed == 4 and summary.failed == 4 and summary.pending == 0
    errors = {o.item_id: o.error["error_type"] for o in outcomes if not o.ok}
    assert errors == {
        "i1": "server_error",
        "i2": "server_error",
        "i3": "MalformedResponseError",
        "i4": "MissingBatchResult",
    }
    assert summary.new_samples == 4 * 3 + 4 * 1  # failed items keep their greedy sample in the cache
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == summary.new_samples
    # A re-run submits exactly the four failed lines again (once each), and completes.
    api.line_fault, api.duplicate_lines = None, False
    failed_lines = {custom_id(_teacher(fake_openai, tmp_path).id, _items()[k].requests[1]) for k in (1, 2, 3, 4)}
    before = len(api.submitted_custom_ids())
    _, s2 = _run(_teacher(fake_openai, tmp_path), tmp_path)
    assert s2.completed == 8 and s2.requests_sent == 4 and s2.cached_samples == 16
    assert set(api.submitted_custom_ids()[before:]) == failed_lines
    assert max(Counter(api.submitted_custom_ids()).values()) == 2


def test_expired_batch_keeps_what_ran_and_fails_the_rest(fake_openai, tmp_path):
    api = fake_openai.batch
    api.outcome, api.expire_after = "expired", 3
    outcomes, summary = _run(_teacher(fake_openai, tmp_path), tmp_path, _items(6))
    assert summary.completed == 3 and summary.failed == 3
    assert {o.error["error_type"] for o in outcomes if not o.ok} == {"batch_expired"}
    api.outcome = "completed"
    _, s2 = _run(_teacher(fake_openai, tmp_path), tmp_path, _items(6))
    assert s2.completed == 6 and s2.requests_sent == 6  # 3 greedy + 3 chat lines of the expired items


def test_failed_batch_fails_every_item_with_the_reason(fake_openai, tmp_path):
    fake_openai.batch.outcome = "failed"
    outcomes, summary = _run(_teacher(fake_openai, tmp_path), tmp_path, _items(3))
    assert summary.failed == 3 and summary.completed == 0
    assert all(o.error["error_type"] == "BatchFailed" and "bad line (fake)" in o.error["message"] for o in outcomes)


def test_restart_polls_the_saved_batch_and_never_resubmits(fake_openai, tmp_path):
    api = fake_openai.batch
    api.hold = True  # the batch stays in progress: the first run gives up polling (as if killed)
    _, s1 = _run(_teacher(fake_openai, tmp_path, batch_max_wait=0.0), tmp_path)
    assert s1.pending == 8 and s1.completed == s1.failed == 0 and len(api.batches) == 2
    saved = {s.batch_id for s in BatchStore(tmp_path / "batches").states()}
    assert saved == set(api.batches)
    api.hold = False
    _, s2 = _run(_teacher(fake_openai, tmp_path), tmp_path)
    assert s2.completed == 8 and len(api.batches) == 2, "the restart submitted the same requests again"
    assert api.calls("POST", "/v1/files") == 2 and len(api.submitted_custom_ids()) == 16


def test_killed_between_create_and_saving_the_id_finds_the_batch(fake_openai, tmp_path, monkeypatch):
    real_save = BatchStore.save

    def dying_save(self, state):
        if state.batch_id is not None:
            raise KeyboardInterrupt  # killed right after batches.create answered
        real_save(self, state)

    monkeypatch.setattr(BatchStore, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _run(_teacher(fake_openai, tmp_path), tmp_path, _items(4))
    monkeypatch.setattr(BatchStore, "save", real_save)
    (state,) = BatchStore(tmp_path / "batches").states()
    assert state.batch_id is None and state.input_file_id is not None
    _, summary = _run(_teacher(fake_openai, tmp_path), tmp_path, _items(4))
    assert summary.completed == 4
    assert ("GET", "/v1/batches") in fake_openai.batch.api_calls  # it listed the batches to find the orphan
    ids = fake_openai.batch.submitted_custom_ids()
    assert len(ids) == len(set(ids)) == 8, "a request was submitted twice"


def test_batch_prices_are_half_and_mode_is_validated(fake_openai, tmp_path):
    online = TeacherConfig(backend="openai", model="gpt-4o-mini", api_key="k")
    batch = TeacherConfig(backend="openai", model="gpt-4o-mini", api_key="k", mode="batch")
    assert batch.prices() == (online.prices()[0] / 2, online.prices()[1] / 2) == (0.075, 0.30)
    priced = {"price_input_per_mtok": 2.0, "price_output_per_mtok": 4.0}
    with GenerationCache(":memory:") as cache:
        est_online = plan_cost(_items(), _teacher(fake_openai, tmp_path, mode="online", **priced), cache)
        est_batch = plan_cost(_items(), _teacher(fake_openai, tmp_path, **priced), cache)
    assert est_batch == est_online, "explicit prices are used as given in both modes"
    with pytest.raises(ValueError, match="mode"):
        TeacherConfig(backend="openai", mode="bulk")
    with pytest.raises(ValueError, match="backend='openai'"):
        TeacherConfig(backend="hf", mode="batch")


def test_reasoning_model_lines_use_max_completion_tokens(fake_openai, tmp_path):
    items = [WorkItem("a", [GenerationRequest(messages=[{"role": "user", "content": "hi"}], temperature=0.0)])]
    outcomes, summary = _run(_teacher(fake_openai, tmp_path, model="o4-mini"), tmp_path, items)
    assert summary.completed == 1, outcomes[0].error
    (line,) = fake_openai.batch.input_lines(next(iter(fake_openai.batch.batches)))
    assert line["body"]["max_completion_tokens"] == 256 and "max_tokens" not in line["body"]
    assert json.dumps(line["body"]).count("temperature") == 0


def test_polling_backs_off_and_batches_are_split_by_size(fake_openai, tmp_path, monkeypatch):
    waits = []
    monkeypatch.setattr(openai_batch.time, "sleep", waits.append)  # record the waits instead of sleeping
    fake_openai.batch.polls_to_finish = 5
    items = [WorkItem(f"i{k}", [GenerationRequest(prompt=f"p{k}", temperature=0.0)]) for k in range(5)]
    teacher = _teacher(
        fake_openai, tmp_path, batch_poll_interval=1.0, batch_poll_max_interval=2.0, batch_max_requests=2
    )
    _, summary = _run(teacher, tmp_path, items)
    assert summary.completed == 5
    assert waits == [1.0, 1.5, 2.0, 2.0, 2.0], "x1.5 per poll round, capped at batch_poll_max_interval"
    assert [len(fake_openai.batch.input_lines(b)) for b in fake_openai.batch.batches] == [2, 2, 1]


def test_results_handed_over_but_lost_from_the_cache_are_reread_not_repaid(fake_openai, tmp_path):
    # Killed after a batch was reported to the engine but before the cache committed it: the re-run takes the
    # answers from the saved copy of the output file, with no new batch and no download.
    first, _ = _run(_teacher(fake_openai, tmp_path), tmp_path, _items(3))
    for path in tmp_path.glob("c.sqlite*"):  # the database, its WAL files and its answer journal
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    calls = list(fake_openai.batch.api_calls)
    again, summary = _run(_teacher(fake_openai, tmp_path), tmp_path, _items(3))
    assert summary.cached_samples == 0 and summary.completed == 3 and summary.new_samples == 9
    assert fake_openai.batch.api_calls == calls and _texts(again) == _texts(first)
