"""Target-only causal loss: same value and gradients as the full-logits loss, logits only at target positions."""

from __future__ import annotations

import pytest

from toolkit.models.students import load_student
from toolkit.training.student_training import PairCollator, make_trainer, tokenize_pairs
from toolkit.training.target_loss import TargetOnlyLossTrainer, causal_target_loss, target_only_trainer_class

ROWS = [
    {"source": "she go to school yesterday .", "target": "she went to school yesterday ."},
    {"source": "the dog run", "target": "the dog runs home quickly ."},
    {"source": "a much longer source sentence about a man who plays a guitar .", "target": "ok ."},
]


def _batch(tok):
    feats = tokenize_pairs(ROWS, tok, is_seq2seq=False, max_source_len=64, max_target_len=32, chat_template=True)
    return PairCollator(pad_token_id=tok.pad_token_id)(feats)  # ragged rows: right padding, -100 labels


def _grads(model) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("count", [None, 17])
def test_target_only_loss_and_grads_equal_full_logits(tiny_llama_dir, lora, count):
    import torch

    model, tok, _ = load_student(str(tiny_llama_dir), lora=lora, lora_dropout=0.0)
    batch = _batch(tok)
    kwargs = {} if count is None else {"num_items_in_batch": torch.tensor(count)}
    full = model(**batch, **kwargs).loss
    full.backward()
    full_grads = _grads(model)
    model.zero_grad()
    loss, outputs = causal_target_loss(model, batch, None if count is None else torch.tensor(count))
    loss.backward()
    n_targets = int((batch["labels"][:, 1:] != -100).sum())
    # The head ran on target-predicting positions only, not on batch x seq positions.
    assert outputs.logits.shape[:2] == (1, n_targets) and n_targets < batch["input_ids"].numel() / 2
    torch.testing.assert_close(loss, full, rtol=1e-6, atol=1e-6)
    grads = _grads(model)
    assert grads.keys() == full_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_trainer_compute_loss_matches_plain_trainer(tiny_llama_dir, tmp_path):
    import torch
    from transformers import Trainer, TrainingArguments

    model, tok, _ = load_student(str(tiny_llama_dir), lora=True, lora_dropout=0.0)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = make_trainer(
        model, tok, args, tokenize_pairs(ROWS, tok, is_seq2seq=False, max_source_len=64, max_target_len=32)
    )
    assert isinstance(trainer, TargetOnlyLossTrainer)
    plain = Trainer(model=model, args=args)
    batch = _batch(tok)
    count = torch.tensor(int((batch["labels"] != -100).sum()))
    ours = trainer.compute_loss(model, dict(batch), num_items_in_batch=count)
    ref = plain.compute_loss(model, dict(batch), num_items_in_batch=count)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    # The hook is removed afterwards: a plain forward gives full logits again.
    assert model(**batch).logits.shape[:2] == batch["input_ids"].shape


def test_seq2seq_students_keep_the_plain_trainer(tiny_t5_dir, tmp_path):
    from transformers import Trainer, TrainingArguments

    model, tok, _ = load_student(str(tiny_t5_dir))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = make_trainer(model, tok, args, [])
    assert type(trainer) is Trainer
    cls = target_only_trainer_class(Trainer)
    assert issubclass(cls, Trainer) and cls.compute_loss is TargetOnlyLossTrainer.compute_loss


def test_causal_loader_picks_sdpa(tiny_llama_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    model, _, _ = load_student(str(tiny_llama_dir), lora=True)
    assert model.config._attn_implementation == "sdpa"
    seen = {}
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    load_student(str(tiny_llama_dir))
    assert seen.get("attn_implementation") == "sdpa", "ask for SDPA explicitly, not whatever the default is"


@pytest.mark.parametrize("every_n_layers", [1, 2])
def test_activation_checkpointing_trains_lora_the_same(tiny_llama_dir, tmp_path, every_n_layers):
    # The memory fix for big batches: activations recomputed in backward, the update unchanged (frozen base
    # weights and embeddings must not cut the LoRA adapters off from the graph).
    import torch
    from transformers import TrainingArguments

    trained = []
    for ckpt in (False, True):
        torch.manual_seed(0)  # same LoRA A init in both runs
        model, tok, _ = load_student(str(tiny_llama_dir), lora=True, lora_dropout=0.0)
        for name, p in model.named_parameters():  # LoRA B starts at zero: make every adapter matter
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02)
        args = TrainingArguments(
            output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1, per_device_train_batch_size=3,
            optim="sgd", learning_rate=1.0, save_strategy="no", disable_tqdm=True, activation_checkpointing=ckpt,
            activation_checkpointing_kwargs={"every_n_layers": every_n_layers} if ckpt else None,
        )  # fmt: skip
        feats = tokenize_pairs(ROWS, tok, is_seq2seq=False, max_source_len=64, max_target_len=32)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}
        make_trainer(model, tok, args, feats).train()
        after = dict(model.named_parameters())
        assert all(not torch.equal(after[n], v) for n, v in before.items()), "every adapter must get a gradient"
        flags = [m.gradient_checkpointing for m in model.modules() if hasattr(m, "gradient_checkpointing")]
        assert any(flags) == ckpt
        trained.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    assert trained[0].keys() == trained[1].keys()
    for name, value in trained[0].items():
        torch.testing.assert_close(trained[1][name], value, rtol=1e-5, atol=1e-6, msg=name)
