"""LLMEmbed's feature cache: a hit loads and runs nothing, the key covers what changes features, shared passes."""

from __future__ import annotations

import pytest
import torch

from toolkit.methods.llmembed import embeddings, feature_cache

SHORT = "the movie was great"
LONG = "this movie was great , i loved it . positive negative world sports business sci/tech music song"


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return embeddings.load_backbone(str(tiny_llama_dir))


def test_cache_hit_skips_model_and_forward(llama, tmp_path, tiny_llama_dir):
    model, tok = llama
    calls = {"forward": 0, "load": 0}
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: calls.__setitem__("forward", calls["forward"] + (m is model))
    )

    def load():
        calls["load"] += 1
        return model, tok

    spec = embeddings.ExtractionSpec(str(tiny_llama_dir), layers=[-2, -1], max_length=32, batch_size=2)
    texts = [SHORT, LONG, "music"]
    try:
        first, info1 = feature_cache.get_or_extract(spec, texts, tmp_path, backbone=load, show_progress=False)
        assert not info1["cache_hit"] and calls == {"forward": 2, "load": 1}
        second, info2 = feature_cache.get_or_extract(spec, texts, tmp_path, backbone=load, show_progress=False)
        assert info2["cache_hit"] and calls == {"forward": 2, "load": 1}
        torch.testing.assert_close(first, second)
        assert info2["extract_wall_s"] == info1["extract_wall_s"]  # original cost is still reported
        # Anything in the key changes -> miss: texts, max_length, layers, pooling.
        feature_cache.get_or_extract(spec, texts[:2], tmp_path, backbone=load, show_progress=False)
        for change in ({"max_length": 16}, {"layers": [-1]}, {"pooling": "last"}):
            spec2 = embeddings.ExtractionSpec(**{**spec.__dict__, **change})
            assert not feature_cache.get_or_extract(spec2, texts, tmp_path, backbone=load, show_progress=False)[1][
                "cache_hit"
            ]
        assert calls["load"] == 5
    finally:
        hook.remove()


def test_fingerprint_is_length_prefixed():
    assert feature_cache.texts_fingerprint(["ab", "c"]) != feature_cache.texts_fingerprint(["a", "bc"])


def test_extract_sources_shares_one_pass_between_poolings(tiny_llama_dir, tmp_path):
    spec = embeddings.ExtractionSpec(str(tiny_llama_dir), layers=[-1], max_length=32, batch_size=2)
    specs = {"llm": spec, "llm_last": embeddings.ExtractionSpec(**{**spec.__dict__, "pooling": "last"})}
    splits = [[SHORT, LONG, "music"], [LONG]]
    feats, infos = feature_cache.extract_sources(specs, splits, tmp_path)
    assert [f.shape[0] for f in feats["llm"]] == [3, 1] and [f.shape[0] for f in feats["llm_last"]] == [3, 1]
    assert infos["llm"][0]["extract_cpu_s"] == infos["llm_last"][0]["extract_cpu_s"]  # one pass, charged to both
    model, tok = embeddings.load_backbone(str(tiny_llama_dir), padding_side="right")
    want, n_tokens = embeddings.extract_embeddings(model, tok, splits[0], layers=[-1], show_progress=False)
    torch.testing.assert_close(feats["llm"][0], want)
    assert infos["llm"][0]["n_tokens"] == n_tokens
