"""Data-parallel decoding in worker processes: the same texts as in-process, budget stops honoured."""

from __future__ import annotations

import pytest

from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher
from toolkit.teachers.hf_pool import plan_workers

PROMPTS = [f"Rewrite: sentence number {i} is here ." for i in range(7)]


def _requests(**kw):
    return [GenerationRequest(messages=[{"role": "user", "content": p}], max_tokens=8, **kw) for p in PROMPTS]


def _teacher(tiny_llama_dir, workers):
    return load_teacher(TeacherConfig(backend="hf", model=str(tiny_llama_dir), batch_size=2, workers=workers))


def test_plan_workers_fits_threads_batches_and_memory():
    assert plan_workers(threads=2, n_batches=10, model_bytes=10, free_bytes=1000) == (2, 1)
    assert plan_workers(threads=4, n_batches=3, model_bytes=10, free_bytes=1000) == (3, 1)
    assert plan_workers(threads=4, n_batches=10, model_bytes=100, free_bytes=250) == (1, 4)  # one copy fits
    assert plan_workers(threads=1, n_batches=10, model_bytes=1, free_bytes=None) == (1, 1)


@pytest.mark.parametrize("kw", [{"temperature": 0.0}, {"temperature": 0.8, "n": 3, "seed": 7}])
def test_workers_give_the_in_process_texts(tiny_llama_dir, kw):
    single = _teacher(tiny_llama_dir, 1).generate(_requests(**kw))
    pooled = _teacher(tiny_llama_dir, 2).generate(_requests(**kw))
    assert [[g.text for g in r] for r in pooled] == [[g.text for g in r] for r in single]
    assert [r[0].usage.prompt_tokens for r in pooled] == [r[0].usage.prompt_tokens for r in single]


def test_budget_stop_sends_no_further_batch(tiny_llama_dir):
    teacher = _teacher(tiny_llama_dir, 2)
    seen = []
    teacher.load()
    teacher.generate_each(
        _requests(temperature=0.0), lambda i, res: seen.append(i), admit=lambda i: len(seen) < 99 and i != 4
    )
    assert 4 not in seen and len(seen) < len(PROMPTS) and len(set(seen)) == len(seen)
