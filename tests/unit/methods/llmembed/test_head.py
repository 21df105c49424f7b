"""The LLMEmbed head: layer selection, masked pooling, views, the fusion head, its training and save / load."""

from __future__ import annotations

import json

import pytest
import torch

from toolkit.methods.llmembed.config import LLMEmbedConfig
from toolkit.methods.llmembed.head import (
    OFFICIAL_DROPOUT,
    HeadConfig,
    LLMEmbedHead,
    OfficialLLMEmbedHead,
    build_head,
    fit_variant,
    last_token_pool,
    load_head,
    masked_mean_pool,
    predict_logits,
    resolve_layers,
    save_head,
    select_views,
    train_head,
    variant_head_config,
)


def test_resolve_layers():
    assert resolve_layers([-1], 4) == [4]
    assert resolve_layers([-3, -2, -1], 4) == [2, 3, 4]
    assert resolve_layers([0, 2, -1], 4) == [0, 2, 4]
    for bad in ([5], [-6], [], [4, -1]):
        with pytest.raises(ValueError):
            resolve_layers(bad, 4)


def test_last_token_pool_both_sides():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_pool(hidden, right).flatten().tolist() == [1.0, 7.0]
    assert last_token_pool(hidden, left).flatten().tolist() == [3.0, 7.0]


def test_masked_mean_ignores_nan_at_pads():
    hidden = torch.tensor([[[1.0], [3.0], [float("nan")]]])
    assert masked_mean_pool(hidden, torch.tensor([[1, 1, 0]])).item() == 2.0


def test_select_views():
    feats = {"llm": torch.randn(5, 3, 8), "encoder": torch.randn(5, 1, 4)}
    views, mean = select_views(feats, "llmembed")
    assert [v.shape for v in views] == [(5, 8)] * 3 + [(5, 4)] and mean == [0, 1, 2]
    views, _ = select_views(feats, "last_layer_only")
    assert len(views) == 1 and torch.equal(views[0], feats["llm"][:, -1])
    assert select_views(feats, "encoder_only")[0][0].shape == (5, 4)
    assert len(select_views(feats, "llm_only")[0]) == 3
    with pytest.raises(ValueError):
        select_views({"llm": feats["llm"]}, "llmembed")


def test_fusion_shapes_and_logits():
    cfg = HeadConfig(view_dims=[8, 8, 8, 4], mean_group=[0, 1, 2], num_labels=3, proj_dim=6, hidden_dims=[16])
    head = LLMEmbedHead(cfg)
    views = [torch.randn(7, d) for d in cfg.view_dims]
    logits = head(views)
    assert logits.shape == (7, 3)
    # MLP input = V(V+1)/2 co-occurrence features + the mean-group dim.
    assert head.mlp[0].in_features == 4 * 5 // 2 + 8
    # Logits, not probabilities (the reference applied softmax before CrossEntropyLoss).
    assert not torch.allclose(logits.sum(-1), torch.ones(7))
    with pytest.raises(ValueError):
        LLMEmbedHead(HeadConfig(view_dims=[8, 4], mean_group=[0, 1], num_labels=2))


def _separable_views():
    """Three classes, two 12-d "LLM layer" views and one 6-d "encoder" view; labels and train / val / test slices."""
    gen = torch.Generator().manual_seed(0)
    n, d = 300, 12
    y = torch.randint(0, 3, (n,), generator=gen)
    centers = torch.randn(3, d, generator=gen) * 3
    x1 = centers[y] + torch.randn(n, d, generator=gen)
    x2 = centers[y][:, :6] + torch.randn(n, 6, generator=gen)
    return [x1, x1 * 0.5 + 1, x2], y, (slice(0, 200), slice(200, 250), slice(250, 300))


def test_head_learns_separable_problem_and_roundtrips(tmp_path):
    views, y, (tr, va, te) = _separable_views()
    d = views[0].shape[1]
    torch.manual_seed(0)
    cfg = HeadConfig(view_dims=[d, d, 6], mean_group=[0, 1], num_labels=3, proj_dim=8, hidden_dims=[32])
    head = LLMEmbedHead(cfg)
    hist = train_head(
        head, [v[tr] for v in views], y[tr], [v[va] for v in views], y[va], epochs=30, patience=5, batch_size=32
    )
    acc = (predict_logits(head, [v[te] for v in views]).argmax(-1) == y[te]).float().mean().item()
    assert acc >= 0.9, acc
    assert hist["history"][-1]["epoch"] == hist["epochs_run"] and 1 <= hist["best_epoch"] <= 30
    save_head(head, tmp_path / "head")
    loaded = load_head(tmp_path / "head")
    probe = [v[te] for v in views]
    torch.testing.assert_close(loaded(probe), predict_logits(head, probe))


def test_train_head_is_seeded():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(60, 5, generator=gen), torch.randint(0, 2, (60,), generator=gen)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        head = LLMEmbedHead(HeadConfig(view_dims=[5], mean_group=[0], num_labels=2, proj_dim=4, hidden_dims=[8]))
        train_head(head, [x[:40]], y[:40], [x[40:]], y[40:], epochs=3, seed=7)
        outs.append(predict_logits(head, [x]))
    torch.testing.assert_close(outs[0], outs[1])


def test_fit_variant_builds_the_head_the_config_describes():
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 2, (40,), generator=gen)
    splits = [{"llm": torch.randn(n, 2, 6, generator=gen) + labels[:n, None, None]} for n in (24, 8, 8)]
    config = LLMEmbedConfig(variants=["llm_only"], encoder_model=None, proj_dim=4, hidden_dims=[8], epochs=3)
    fit = fit_variant("llm_only", splits, labels[:24], labels[:8], ["a", "b"], config, seed=0)
    assert fit["head"].config.proj_dim == 4 and fit["head"].config.hidden_dims == [8]
    assert fit["head"].config.view_dims == [6, 6] and len(fit["predictions"]) == 8
    assert fit["fit"]["epochs_run"] <= 3


def _official_config(**overrides) -> HeadConfig:
    """Three 8-d LLM layers (the mean group) and one 4-d encoder view, the LLM layers projected to its width."""
    shape = {"view_dims": [8, 8, 8, 4], "mean_group": [0, 1, 2], "num_labels": 3, "proj_dim": 4, "hidden_dims": [16]}
    return HeadConfig(**{**shape, "style": "official", **overrides})


def test_official_head_fuses_the_full_unscaled_gram_and_the_raw_layer_mean():
    cfg = _official_config(sigma=0.3)
    head = build_head(cfg).eval()
    assert isinstance(head, OfficialLLMEmbedHead)
    # MLP input = the V*V gram entries (both triangles) + the LLM width (the official 7*7 + 4096 = 4145).
    assert head.mlp[0].in_features == 4 * 4 + 8
    views = [torch.randn(5, d) * 10 + 3 for d in cfg.view_dims]
    seen = {}
    head.mlp.register_forward_pre_hook(lambda module, args: seen.setdefault("input", args[0]))
    probs = head(views)
    # Probabilities, not logits: the official softmax before CrossEntropyLoss is reproduced.
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))
    co, mean = seen["input"][:, :16], seen["input"][:, 16:]
    # LLM layers projected, the encoder view raw; no standardization; the gram neither halved nor scaled.
    stacked = torch.stack([head.proj[i](views[i]) for i in range(3)] + [views[3]], dim=1)
    expected = 2 * torch.sigmoid(0.3 * (stacked @ stacked.transpose(1, 2))) - 1
    torch.testing.assert_close(co, expected.flatten(1))
    torch.testing.assert_close(co.view(5, 4, 4), co.view(5, 4, 4).transpose(1, 2))
    torch.testing.assert_close(mean, torch.stack(views[:3]).mean(0))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"view_dims": [8, 8], "mean_group": [0, 1]}, "needs an encoder view"),
        ({"proj_dim": 6}, "proj_dim=6"),
        ({"style": "nope"}, "head style"),
    ],
)
def test_official_head_refuses_what_it_cannot_fuse(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_head(_official_config(**overrides))


def test_official_head_learns_separable_problem_and_roundtrips(tmp_path):
    views, y, (tr, va, te) = _separable_views()
    torch.manual_seed(0)
    cfg = _official_config(view_dims=[12, 12, 6], mean_group=[0, 1], proj_dim=6, hidden_dims=[32], dropout=0.5)
    head = build_head(cfg)
    train_head(head, [v[tr] for v in views], y[tr], [v[va] for v in views], y[va], epochs=40, patience=10)
    probe = [v[te] for v in views]
    acc = (predict_logits(head, probe).argmax(-1) == y[te]).float().mean().item()
    assert acc >= 0.8, acc  # chance is 1/3
    save_head(head, tmp_path / "head")
    assert json.loads((tmp_path / "head" / "head_config.json").read_text())["head"]["style"] == "official"
    loaded = load_head(tmp_path / "head")
    assert isinstance(loaded, OfficialLLMEmbedHead) and loaded.config == head.config
    torch.testing.assert_close(loaded(probe), predict_logits(head, probe))


def test_a_head_saved_before_styles_existed_loads_as_the_toolkit_head(tmp_path):
    torch.manual_seed(0)
    head = LLMEmbedHead(HeadConfig(view_dims=[6, 6, 4], mean_group=[0, 1], num_labels=2, proj_dim=4, hidden_dims=[8]))
    head.fit_standardizer([torch.randn(10, d) * 5 for d in (6, 6, 4)])
    save_head(head, tmp_path / "old")
    path = tmp_path / "old" / "head_config.json"
    payload = json.loads(path.read_text())
    del payload["head"]["style"]
    path.write_text(json.dumps(payload))
    loaded = load_head(tmp_path / "old")
    assert type(loaded) is LLMEmbedHead and loaded.config.style == "toolkit"
    probe = [torch.randn(3, d) for d in (6, 6, 4)]
    torch.testing.assert_close(loaded(probe), predict_logits(head, probe))


def test_fit_variant_official_head_projects_llm_layers_to_the_encoder_width():
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 2, (40,), generator=gen)
    splits = [
        {"llm": torch.randn(n, 2, 6, generator=gen) + labels[:n, None, None], "encoder": torch.randn(n, 1, 5)}
        for n in (24, 8, 8)
    ]
    config = LLMEmbedConfig(variants=["llmembed_official_head"], proj_dim=16, hidden_dims=[8], epochs=3)
    fit = fit_variant("llmembed_official_head", splits, labels[:24], labels[:8], ["a", "b"], config, seed=0)
    head = fit["head"]
    assert isinstance(head, OfficialLLMEmbedHead) and head.config.style == "official"
    assert head.config.proj_dim == 5 and head.config.dropout == OFFICIAL_DROPOUT and head.config.hidden_dims == [8]
    assert head.config.view_dims == [6, 6, 5] and len(fit["predictions"]) == 8
    # The other variants keep the config's projection and dropout, and the toolkit head.
    toolkit = variant_head_config("llmembed", [6, 6, 5], [0, 1], ["a", "b"], config)
    assert (toolkit.style, toolkit.proj_dim, toolkit.dropout) == ("toolkit", 16, config.dropout)


def test_the_official_head_variant_needs_the_encoder():
    config = LLMEmbedConfig(variants=["llm_only"], encoder_model=None)
    with pytest.raises(ValueError, match="'llmembed_official_head' needs encoder features"):
        select_views({"llm": torch.randn(4, 2, 6)}, "llmembed_official_head")
    with pytest.raises(ValueError, match="needs an encoder view"):
        variant_head_config("llmembed_official_head", [6, 6], [0, 1], ["a", "b"], config)
