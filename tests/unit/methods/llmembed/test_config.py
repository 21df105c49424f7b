"""LLMEmbedConfig: every bad knob is refused with its name, and a config never shares a caller's list."""

from __future__ import annotations

import pytest

from toolkit.methods.llmembed.config import VARIANTS, LLMEmbedConfig


def test_defaults_name_every_variant_and_need_the_encoder():
    config = LLMEmbedConfig()
    assert config.variants == list(VARIANTS) and config.uses_encoder()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variants": ["nope"]}, "unknown variants"),
        ({"variants": []}, "at least one variant"),
        ({"encoder_model": None}, "need encoder_model"),
        ({"llm_pooling": "max"}, "pooling"),
        ({"encoder_pooling": "cls"}, "pooling"),
        ({"llm_layers": []}, "at least one layer"),
        ({"llm_layers": [-1, -1]}, "twice"),
        ({"proj_dim": 0}, "proj_dim"),
        ({"extract_batch_size": 0, "batch_size": 0}, "extract_batch_size, batch_size"),
        ({"hidden_dims": [16, 0]}, "hidden_dims"),
        ({"dropout": 1.0}, "dropout"),
        ({"learning_rate": 0.0}, "learning_rate"),
    ],
)
def test_bad_knobs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        LLMEmbedConfig(**overrides)


def test_llm_only_variants_need_no_encoder():
    config = LLMEmbedConfig(encoder_model=None, variants=["llm_only", "last_layer_only"])
    assert not config.uses_encoder()


def test_the_callers_lists_are_copied_not_shared():
    layers, variants, hidden = [-2, -1], ["llm_only"], [8]
    config = LLMEmbedConfig(llm_layers=layers, variants=variants, hidden_dims=hidden)
    layers.append(0)
    variants.append("nope")
    hidden.append(0)
    assert config.llm_layers == [-2, -1] and config.variants == ["llm_only"] and config.hidden_dims == [8]
    config.llm_layers.append(-3)
    assert layers == [-2, -1, 0]


def test_the_official_head_variant_reads_the_fused_views():
    config = LLMEmbedConfig(variants=["llmembed_official_head"])
    assert "llmembed_official_head" in VARIANTS and config.uses_encoder()
    with pytest.raises(ValueError, match="need encoder_model"):
        LLMEmbedConfig(variants=["llmembed_official_head"], encoder_model=None)
