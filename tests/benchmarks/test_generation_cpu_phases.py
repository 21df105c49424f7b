"""The CPU phase breakdown of the generation benchmark measures every phase and leaves the code as it found it."""

from __future__ import annotations

import openai._base_client as base_client

import toolkit.teachers.openai as openai_teacher
from benchmarks.generation_cpu_phases import PHASES, measure_phases, phase_rows
from toolkit.generation.cache import GenerationCache
from toolkit.generation.engine import run_generation
from toolkit.generation.items import WorkItem
from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher


def test_phases_are_measured_and_patches_restored(fake_openai, tmp_path):
    teacher = load_teacher(TeacherConfig(backend="openai", model="fake", base_url=fake_openai.base_url, api_key="k"))
    items = [WorkItem(str(i), [GenerationRequest(prompt=f"p{i}", n=2, seed=0)]) for i in range(20)]
    before = (GenerationCache.submit, base_client.BaseClient._build_request, openai_teacher.parse_response)
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        phases = measure_phases(lambda: run_generation(items, teacher, cache, progress=False), teacher, len(items))
    assert set(phases) == set(PHASES) | {"total"}
    for phase in ("build", "parse", "handoff", "bookkeeping", "transport", "retry", "plan"):
        assert phases[phase] > 0, phase
    assert sum(v for k, v in phases.items() if k != "total") <= phases["total"] + 1e-9
    assert len(fake_openai.requests) == 20
    after = (GenerationCache.submit, base_client.BaseClient._build_request, openai_teacher.parse_response)
    assert after == before and "generate_each" not in vars(teacher)
    rows = phase_rows({0.05: phases}, {0.05: {"bare": 0.1}})
    assert rows[0]["0.05 s"].endswith("%)") and rows[-1] == {
        "client CPU ms/req": "same run, uninstrumented: bare",
        "0.05 s": "0.100",
    }
