"""LLMEmbed feature extraction: order and padding, layer selection, each model's positions."""

from __future__ import annotations

import pytest
import torch
from transformers import RobertaConfig, RobertaModel

from tests.fakes.tiny_models import build_tokenizer
from toolkit.meter import Cost
from toolkit.methods.llmembed import embeddings
from toolkit.methods.llmembed.config import LLMEmbedConfig
from toolkit.methods.llmembed.head import pool_hidden
from toolkit.models.backbone_inputs import forward_params

SHORT = "the movie was great"
LONG = "this movie was great , i loved it . positive negative world sports business sci/tech music song"


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return embeddings.load_backbone(str(tiny_llama_dir))


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return embeddings.load_backbone(str(tiny_bert_dir))


@pytest.mark.parametrize("which", ["llama", "bert"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooling_ignores_padding(request, which, side, pooling):
    model, tok = request.getfixturevalue(which)
    tok.padding_side = side
    kw = {"layers": [0, -1], "pooling": pooling, "show_progress": False}
    alone, _ = embeddings.extract_embeddings(model, tok, [SHORT], batch_size=1, **kw)
    batched, _ = embeddings.extract_embeddings(model, tok, [SHORT, LONG], batch_size=2, **kw)
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
    feats, n_tokens = embeddings.extract_embeddings(model, tok, [LONG], layers=[0, 1, -1], show_progress=False)
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
    together, _ = embeddings.extract_embeddings(model, tok, texts, layers=[-1], batch_size=2, show_progress=False)
    for i, t in enumerate(texts):
        alone, _ = embeddings.extract_embeddings(model, tok, [t], layers=[-1], batch_size=1, show_progress=False)
        torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=1e-4)
    rows = [r for r, _ in embeddings.length_sorted_batches(tok, texts, 128, 2)]
    assert sorted(i for r in rows for i in r) == list(range(len(texts))) and rows[0][0] == 3


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    """A tiny RoBERTa from config: its positions start at ``padding_idx + 1``, not 0."""
    folder = tmp_path_factory.mktemp("tiny-roberta")
    tok = build_tokenizer(folder)
    config = RobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=130,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(folder)
    return embeddings.load_backbone(str(folder))


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
        batched, _ = embeddings.extract_embeddings(
            model, tok, texts, layers=[0, -1], pooling=pooling, batch_size=2, show_progress=False
        )
        for i, text in enumerate(texts):
            enc = tok([text], return_tensors="pt")
            with torch.inference_mode():
                hs = model(**enc, output_hidden_states=True).hidden_states
            want = torch.stack([pool_hidden(hs[j], enc["attention_mask"], pooling)[0] for j in (0, -1)])
            torch.testing.assert_close(batched[i], want, atol=1e-5, rtol=1e-4)
    batch = tok(texts, padding=True, return_tensors="pt")
    assert int(batch["attention_mask"][0].sum()) < batch["attention_mask"].shape[1]  # SHORT really was padded


def test_only_zero_based_models_get_position_ids(roberta, llama, bert):
    assert "position_ids" not in forward_params(roberta[0])  # derives padding_idx + 1 based positions itself
    assert "position_ids" in forward_params(llama[0]) and "position_ids" in forward_params(bert[0])


def test_specs_follow_the_variants():
    config = LLMEmbedConfig(llm_model="llm", encoder_model="enc", llm_layers=[-2, -1], max_length=64)
    specs = embeddings.extraction_specs(config)
    assert set(specs) == {"llm", "llm_last", "encoder"}
    assert specs["llm_last"].pooling == "last" and specs["llm_last"].layers == specs["llm"].layers == [-2, -1]
    assert specs["encoder"].model == "enc" and specs["encoder"].layers == [-1]
    assert {spec.max_length for spec in specs.values()} == {64}
    only_llm = LLMEmbedConfig(llm_model="llm", encoder_model="enc", variants=["llm_only"])
    assert set(embeddings.extraction_specs(only_llm)) == {"llm"}


def test_one_process_cost_is_its_own():
    assert embeddings.cost_over_ranks(2.0, 3.5) == Cost(2.0, 3.5)
