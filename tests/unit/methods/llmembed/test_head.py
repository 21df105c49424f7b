"""The LLMEmbed head: layer selection, masked pooling, views, the fusion head, its training and save / load."""

from __future__ import annotations

import pytest
import torch

from toolkit.methods.llmembed.config import LLMEmbedConfig
from toolkit.methods.llmembed.head import (
    HeadConfig,
    LLMEmbedHead,
    fit_variant,
    last_token_pool,
    load_head,
    masked_mean_pool,
    predict_logits,
    resolve_layers,
    save_head,
    select_views,
    train_head,
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


def test_head_learns_separable_problem_and_roundtrips(tmp_path):
    gen = torch.Generator().manual_seed(0)
    n, d = 300, 12
    y = torch.randint(0, 3, (n,), generator=gen)
    centers = torch.randn(3, d, generator=gen) * 3
    x1 = centers[y] + torch.randn(n, d, generator=gen)
    x2 = centers[y][:, :6] + torch.randn(n, 6, generator=gen)
    views = [x1, x1 * 0.5 + 1, x2]
    tr, va, te = slice(0, 200), slice(200, 250), slice(250, 300)
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
