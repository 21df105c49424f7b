"""vLLM backend: actionable ImportError without the extra; a real generation on GPU machines."""

from __future__ import annotations

import importlib.util

import pytest

from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_missing_vllm_names_the_pip_command():
    with pytest.raises(ImportError, match=r"pip install"):
        load_teacher(TeacherConfig(backend="vllm", model="local:smollm2-135m"))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="needs the vllm extra")
def test_vllm_generates_n_samples():
    teacher = load_teacher(TeacherConfig(backend="vllm", model="local:smollm2-135m"))
    out = teacher.generate([GenerationRequest(prompt="The capital of France is", n=2, max_tokens=8, seed=0)])
    assert len(out[0]) == 2 and all(g.text for g in out[0])
