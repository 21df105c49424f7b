"""toolkit.llmembed: masked pooling, layer selection, extraction order, cache, fusion head, training, parsing."""

from __future__ import annotations

import pytest
import torch

from toolkit import llmembed as le

SHORT = "the movie was great"
LONG = "this movie was great , i loved it . positive negative world sports business sci/tech music song"


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return le.load_backbone(str(tiny_llama_dir))


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return le.load_backbone(str(tiny_bert_dir))


def test_resolve_layers():
    assert le.resolve_layers([-1], 4) == [4]
    assert le.resolve_layers([-3, -2, -1], 4) == [2, 3, 4]
    assert le.resolve_layers([0, 2, -1], 4) == [0, 2, 4]
    for bad in ([5], [-6], [], [4, -1]):
        with pytest.raises(ValueError):
            le.resolve_layers(bad, 4)


def test_last_token_pool_both_sides():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert le.last_token_pool(hidden, right).flatten().tolist() == [1.0, 7.0]
    assert le.last_token_pool(hidden, left).flatten().tolist() == [3.0, 7.0]


def test_masked_mean_ignores_nan_at_pads():
    hidden = torch.tensor([[[1.0], [3.0], [float("nan")]]])
    assert le.masked_mean_pool(hidden, torch.tensor([[1, 1, 0]])).item() == 2.0


@pytest.mark.parametrize("which", ["llama", "bert"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooling_ignores_padding(request, which, side, pooling):
    model, tok = request.getfixturevalue(which)
    tok.padding_side = side
    kw = {"layers": [0, -1], "pooling": pooling, "show_progress": False}
    alone, _ = le.extract_embeddings(model, tok, [SHORT], batch_size=1, **kw)
    batched, _ = le.extract_embeddings(model, tok, [SHORT, LONG], batch_size=2, **kw)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-4)
    # Control: the short text really was padded, and an unmasked mean (the reference's bug) would differ.
    batch = tok([SHORT, LONG], padding=True, return_tensors="pt")
    assert int(batch["attention_mask"][0].sum()) < batch["attention_mask"].shape[1]
    with torch.inference_mode():
        hs = model(**batch, output_hidden_states=True).hidden_states
    assert not torch.allclose(hs[-1][0].mean(0), alone[0, 1], atol=1e-3)


def test_layer_selection_matches_hidden_states(llama):
    model, tok = llama
    tok.padding_side = "right"
    feats, n_tokens = le.extract_embeddings(model, tok, [LONG], layers=[0, 1, -1], show_progress=False)
    batch = tok([LONG], return_tensors="pt")
    with torch.inference_mode():
        hs = model(**batch, output_hidden_states=True).hidden_states
    assert feats.shape == (1, 3, model.config.hidden_size)
    for j, i in enumerate([0, 1, 2]):
        torch.testing.assert_close(feats[0, j], hs[i][0].mean(0), atol=1e-5, rtol=1e-4)
    assert n_tokens == batch["input_ids"].shape[1]


def test_length_sorted_batches_restore_order(bert):
    model, tok = bert
    texts = [LONG, SHORT, "music", LONG + " song", "positive negative"]
    together, _ = le.extract_embeddings(model, tok, texts, layers=[-1], batch_size=2, show_progress=False)
    for i, t in enumerate(texts):
        alone, _ = le.extract_embeddings(model, tok, [t], layers=[-1], batch_size=1, show_progress=False)
        torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=1e-4)
    rows = [r for r, _ in le.length_sorted_batches(tok, texts, 128, 2)]
    assert sorted(i for r in rows for i in r) == list(range(len(texts))) and rows[0][0] == 3


def test_cache_hit_skips_model_and_forward(llama, tmp_path, tiny_llama_dir):
    model, tok = llama
    calls = {"forward": 0, "load": 0}
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: calls.__setitem__("forward", calls["forward"] + (m is model))
    )

    def load():
        calls["load"] += 1
        return model, tok

    spec = le.ExtractionSpec(str(tiny_llama_dir), layers=[-2, -1], max_length=32, batch_size=2)
    texts = [SHORT, LONG, "music"]
    try:
        first, info1 = le.get_or_extract(spec, texts, tmp_path, backbone=load, show_progress=False)
        assert not info1["cache_hit"] and calls == {"forward": 2, "load": 1}
        second, info2 = le.get_or_extract(spec, texts, tmp_path, backbone=load, show_progress=False)
        assert info2["cache_hit"] and calls == {"forward": 2, "load": 1}
        torch.testing.assert_close(first, second)
        assert info2["extract_wall_s"] == info1["extract_wall_s"]  # original cost is still reported
        # Anything in the key changes -> miss: texts, max_length, layers, pooling.
        le.get_or_extract(spec, texts[:2], tmp_path, backbone=load, show_progress=False)
        for change in ({"max_length": 16}, {"layers": [-1]}, {"pooling": "last"}):
            spec2 = le.ExtractionSpec(**{**spec.__dict__, **change})
            assert not le.get_or_extract(spec2, texts, tmp_path, backbone=load, show_progress=False)[1]["cache_hit"]
        assert calls["load"] == 5
    finally:
        hook.remove()


def test_fingerprint_is_length_prefixed():
    assert le.texts_fingerprint(["ab", "c"]) != le.texts_fingerprint(["a", "bc"])


def test_select_views():
    feats = {"llm": torch.randn(5, 3, 8), "encoder": torch.randn(5, 1, 4)}
    views, mean = le.select_views(feats, "llmembed")
    assert [v.shape for v in views] == [(5, 8)] * 3 + [(5, 4)] and mean == [0, 1, 2]
    views, _ = le.select_views(feats, "last_layer_only")
    assert len(views) == 1 and torch.equal(views[0], feats["llm"][:, -1])
    assert le.select_views(feats, "encoder_only")[0][0].shape == (5, 4)
    assert len(le.select_views(feats, "llm_only")[0]) == 3
    with pytest.raises(ValueError):
        le.select_views({"llm": feats["llm"]}, "llmembed")


def test_fusion_shapes_and_logits():
    cfg = le.HeadConfig(view_dims=[8, 8, 8, 4], mean_group=[0, 1, 2], num_labels=3, proj_dim=6, hidden_dims=[16])
    head = le.make_head(cfg)
    views = [torch.randn(7, d) for d in cfg.view_dims]
    logits = head(views)
    assert logits.shape == (7, 3)
    # MLP input = V(V+1)/2 co-occurrence features + the mean-group dim.
    assert head.mlp[0].in_features == 4 * 5 // 2 + 8
    # Logits, not probabilities (the reference applied softmax before CrossEntropyLoss).
    assert not torch.allclose(logits.sum(-1), torch.ones(7))
    with pytest.raises(ValueError):
        le.make_head(le.HeadConfig(view_dims=[8, 4], mean_group=[0, 1], num_labels=2))


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
    cfg = le.HeadConfig(view_dims=[d, d, 6], mean_group=[0, 1], num_labels=3, proj_dim=8, hidden_dims=[32])
    head = le.make_head(cfg)
    hist = le.train_head(
        head, [v[tr] for v in views], y[tr], [v[va] for v in views], y[va], epochs=30, patience=5, batch_size=32
    )
    acc = (le.predict_logits(head, [v[te] for v in views]).argmax(-1) == y[te]).float().mean().item()
    assert acc >= 0.9, acc
    assert hist["history"][-1]["epoch"] == hist["epochs_run"] and 1 <= hist["best_epoch"] <= 30
    le.save_head(head, tmp_path / "head")
    loaded = le.load_head(tmp_path / "head")
    probe = [v[te] for v in views]
    torch.testing.assert_close(loaded(probe), le.predict_logits(head, probe))


def test_train_head_is_seeded():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(60, 5, generator=gen), torch.randint(0, 2, (60,), generator=gen)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        head = le.make_head(le.HeadConfig(view_dims=[5], mean_group=[0], num_labels=2, proj_dim=4, hidden_dims=[8]))
        le.train_head(head, [x[:40]], y[:40], [x[40:]], y[40:], epochs=3, seed=7)
        outs.append(le.predict_logits(head, [x]))
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("positive", "positive"),
        (" Negative.", "negative"),
        ("The label is sci/tech", "Sci/Tech"),
        ("I think it's positive, not negative", "positive"),
        ("no idea", None),
        ("", None),
    ],
)
def test_parse_label(output, expected):
    assert le.parse_label(output, ["negative", "positive", "Sci/Tech"]) == expected


def test_few_shot_messages_and_demos():
    demos = le.pick_demos(["a", "b", "c", "d"], ["x", "y", "x", "y"], ["x", "y"], per_class=1, seed=0)
    assert sorted(label for _, label in demos) == ["x", "y"]
    msgs = le.build_few_shot_messages("query " * 200, demos, ["x", "y"], max_chars=50)
    assert msgs[0]["role"] == "system" and "x, y" in msgs[0]["content"]
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant", "user", "assistant", "user"]
    assert len(msgs[-1]["content"]) < 80


def test_cost_energy():
    cost = le.Cost(10.0, 36.0) + le.Cost(1.0, 0.0)
    assert cost.wall_s == 11.0 and cost.energy_wh(10.0) == pytest.approx(0.1)
    with le.CostMeter() as m:
        sum(i * i for i in range(200_000))
    assert m.cost.wall_s > 0 and m.cost.cpu_s > 0


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    """A tiny RoBERTa from config: its positions start at ``padding_idx + 1``, not 0."""
    from transformers import RobertaConfig, RobertaModel

    from tests.fakes.tiny_models import build_tokenizer

    folder = tmp_path_factory.mktemp("tiny-roberta")
    tok = build_tokenizer(folder)
    config = RobertaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=130, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(folder)
    return le.load_backbone(str(folder))


@pytest.mark.parametrize("which", ["roberta", "llama", "bert"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_equals_plain_unpadded_forward(request, which, side):
    """Each model keeps its own position scheme: a padded batch equals the model's own unpadded forward.

    The reference is a plain ``model(**tokenizer(text))`` with no position ids passed, so a wrong position
    convention in the extraction (e.g. 0-based ids fed to RoBERTa, whose positions start at padding_idx + 1)
    cannot cancel out on both sides of the comparison.
    """
    model, tok = request.getfixturevalue(which)
    tok.padding_side = side
    texts = [SHORT, LONG]
    for pooling in ("mean", "last"):
        batched, _ = le.extract_embeddings(
            model, tok, texts, layers=[0, -1], pooling=pooling, batch_size=2, show_progress=False
        )
        for i, text in enumerate(texts):
            enc = tok([text], return_tensors="pt")
            with torch.inference_mode():
                hs = model(**enc, output_hidden_states=True).hidden_states
            want = torch.stack([le.pool_hidden(hs[j], enc["attention_mask"], pooling)[0] for j in (0, -1)])
            torch.testing.assert_close(batched[i], want, atol=1e-5, rtol=1e-4)
    batch = tok(texts, padding=True, return_tensors="pt")
    assert int(batch["attention_mask"][0].sum()) < batch["attention_mask"].shape[1]  # SHORT really was padded


def test_only_zero_based_models_get_position_ids(roberta, llama, bert):
    from toolkit.backbone_inputs import forward_params

    assert "position_ids" not in forward_params(roberta[0])  # derives padding_idx + 1 based positions itself
    assert "position_ids" in forward_params(llama[0]) and "position_ids" in forward_params(bert[0])
