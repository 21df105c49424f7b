"""Student plumbing: tokenization masks, dynamic padding, batched generation order, LoRA loading."""

from __future__ import annotations

import pytest

from toolkit.models.students import generate, load_student, lora_config
from toolkit.training.student_training import (
    IGNORE_INDEX,
    PairCollator,
    encode_prompt,
    make_trainer,
    padding_stats,
    tokenize_pairs,
)

ROWS = [
    {"source": "she go to school yesterday .", "target": "she went to school yesterday ."},
    {"source": "the dog run", "target": "the dog runs home quickly ."},
    {"source": "a much longer source sentence about a man who plays a guitar .", "target": "ok ."},
]


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return load_student(str(tiny_llama_dir))


@pytest.fixture(scope="module")
def t5(tiny_t5_dir):
    return load_student(str(tiny_t5_dir))


def test_load_student_kinds(llama, t5):
    assert llama[2] is False and t5[2] is True
    assert llama[1].padding_side == "right"


@pytest.mark.parametrize("chat_template", [False, True])
def test_causal_loss_only_on_target(llama, chat_template):
    _, tok, _ = llama
    feats = tokenize_pairs(
        ROWS, tok, is_seq2seq=False, max_source_len=64, max_target_len=32, chat_template=chat_template
    )
    for row, features in zip(ROWS, feats):
        prompt = encode_prompt(tok, row["source"], max_len=64, chat_template=chat_template)
        assert features["input_ids"][: len(prompt)] == prompt
        assert features["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)
        target_ids = [t for t in features["labels"] if t != IGNORE_INDEX]
        assert target_ids[-1] == tok.eos_token_id
        assert tok.decode(target_ids, skip_special_tokens=True).strip() == row["target"]
        assert len(features["input_ids"]) == len(features["labels"]) == len(features["attention_mask"])


def test_causal_truncation_keeps_template_and_eos(llama):
    _, tok, _ = llama
    (features,) = tokenize_pairs(
        ROWS[2:], tok, is_seq2seq=False, max_source_len=3, max_target_len=2, chat_template=True
    )
    prompt = encode_prompt(tok, ROWS[2]["source"], max_len=3, chat_template=True)
    # The assistant header survives truncation; the target is cut to 1 token + eos.
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
    assert [t for t in features["labels"] if t != IGNORE_INDEX][-1] == tok.eos_token_id
    assert sum(t != IGNORE_INDEX for t in features["labels"]) == 2


def test_seq2seq_features(t5):
    _, tok, _ = t5
    feats = tokenize_pairs(ROWS, tok, is_seq2seq=True, max_source_len=20, max_target_len=10)
    assert all(len(f["input_ids"]) <= 20 and len(f["labels"]) <= 10 for f in feats)
    assert tok.decode(feats[0]["labels"], skip_special_tokens=True) == ROWS[0]["target"][:9]
    assert feats[1]["labels"][-1] == tok.eos_token_id


def test_bad_rows_raise(llama):
    _, tok, _ = llama
    with pytest.raises(ValueError, match="target"):
        tokenize_pairs([{"source": "x"}], tok, is_seq2seq=False, max_source_len=8, max_target_len=8)
    with pytest.raises(ValueError, match="empty target"):
        tokenize_pairs([{"source": "x", "target": "  "}], tok, is_seq2seq=False, max_source_len=8, max_target_len=8)


def test_collator_dynamic_vs_fixed(llama, t5):
    _, tok, _ = llama
    feats = tokenize_pairs(ROWS, tok, is_seq2seq=False, max_source_len=64, max_target_len=32)
    longest = max(len(f["input_ids"]) for f in feats)
    batch = PairCollator(pad_token_id=tok.pad_token_id)(feats)
    assert batch["input_ids"].shape == (3, longest) == batch["labels"].shape
    shortest = min(range(3), key=lambda i: len(feats[i]["input_ids"]))
    length = len(feats[shortest]["input_ids"])
    assert (batch["labels"][shortest, length:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][shortest, length:] == tok.pad_token_id).all()
    assert batch["attention_mask"][shortest].sum() == length
    fixed = PairCollator(pad_token_id=tok.pad_token_id, pad_to=128)(feats)
    assert fixed["input_ids"].shape == (3, 128)
    assert padding_stats(fixed)["real_tokens"] == padding_stats(batch)["real_tokens"]
    left = PairCollator(pad_token_id=tok.pad_token_id, padding_side="left")(feats)
    assert (left["input_ids"][shortest, -length:] == batch["input_ids"][shortest, :length]).all()
    # Seq2seq: labels padded to their own (decoder) length.
    _, ttok, _ = t5
    sfeats = tokenize_pairs(ROWS, ttok, is_seq2seq=True, max_source_len=64, max_target_len=64)
    sb = PairCollator(pad_token_id=ttok.pad_token_id)(sfeats)
    assert sb["labels"].shape[1] == max(len(f["labels"]) for f in sfeats)
    assert sb["input_ids"].shape[1] == max(len(f["input_ids"]) for f in sfeats)


@pytest.mark.parametrize("which", ["llama", "t5"])
def test_generate_matches_unbatched(which, request):
    """Batched, length-sorted, padded generation gives the same strings, in input order, as one-at-a-time."""
    model, tok, seq2seq = request.getfixturevalue(which)
    inputs = [r["source"] for r in ROWS] + ["x"]
    batched = generate(model, tok, inputs, is_seq2seq=seq2seq, max_new_tokens=6, batch_size=4)
    single = [generate(model, tok, [x], is_seq2seq=seq2seq, max_new_tokens=6, batch_size=1)[0] for x in inputs]
    assert batched == single
    assert all(s == s.strip() for s in batched)
    assert model.training  # restored


def test_lora_trains_only_adapter(tiny_llama_dir, tmp_path):
    from transformers import TrainingArguments

    model, tok, _ = load_student(str(tiny_llama_dir), lora=True, lora_r=4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    feats = tokenize_pairs(ROWS, tok, is_seq2seq=False, max_source_len=32, max_target_len=16)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        train_sampling_strategy="group_by_length",
    )
    trainer = make_trainer(model, tok, args, feats)
    trainer.train()
    assert any("loss" in h for h in trainer.state.log_history)
    changed = [n for n, p in model.named_parameters() if n in before and not p.detach().equal(before[n])]
    assert changed


def test_generate_from_prompt_ids_with_stats(llama):
    """Pre-tokenized prompts give the same answers as source texts; the stats count real tokens."""
    model, tok, _ = llama
    ids = [encode_prompt(tok, r["source"]) for r in ROWS]
    texts, stats = generate(model, tok, prompt_ids=ids, max_new_tokens=5, batch_size=2, return_stats=True)
    assert texts == generate(model, tok, [r["source"] for r in ROWS], max_new_tokens=5, batch_size=2)
    assert stats["prompt_tokens"] == sum(map(len, ids)) and 0 <= stats["generated_tokens"] <= 5 * len(ROWS)
    with pytest.raises(ValueError, match="exactly one"):
        generate(model, tok, ["x"], prompt_ids=ids)


def test_lora_config_and_bare_student_for_sft_trainer(tiny_llama_dir):
    """attach_lora=False leaves the adapter to SFTTrainer(peft_config=lora_config(...)); YAML's list shorthand works."""
    from peft import PeftModel

    config = lora_config(r=4, target_modules=["all-linear"])
    assert config.r == 4 and config.target_modules == "all-linear" and config.task_type == "CAUSAL_LM"
    model, _, _ = load_student(str(tiny_llama_dir), lora=True, attach_lora=False)
    assert not isinstance(model, PeftModel)
    with pytest.raises(ValueError, match="lora_r"):
        lora_config(r=0)
