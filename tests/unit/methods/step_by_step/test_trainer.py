"""The two-task loss on both trainers: the exact alpha weighting and the trainer each student gets."""

from __future__ import annotations

import pytest
import torch
from transformers import Seq2SeqTrainer, TrainingArguments
from trl import SFTTrainer

from toolkit.methods.step_by_step.collator import StepByStepCollator
from toolkit.methods.step_by_step.trainer import make_trainer, target_token_count
from toolkit.training.target_loss import causal_target_loss


def _trainer(model, tokenizer, tmp_path, alpha, seq2seq, features):
    training_args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    collator = StepByStepCollator(tokenizer, is_seq2seq=seq2seq)
    return make_trainer(
        model,
        tokenizer,
        training_args,
        is_seq2seq=seq2seq,
        collator=collator,
        train_examples=features,
        alpha=alpha,
    )


def test_make_trainer_picks_the_fields_trainer(student, features, tmp_path):
    """Seq2seq students train with transformers' Seq2SeqTrainer, causal ones with TRL's SFTTrainer (no re-tokenising)."""
    model, tokenizer, seq2seq = student
    trainer = _trainer(model, tokenizer, tmp_path, 0.5, seq2seq, features)
    assert isinstance(trainer, Seq2SeqTrainer if seq2seq else SFTTrainer)
    assert trainer.train_dataset[0] == features[0]  # raw text: the collator builds both task batches


def test_loss_weighting_is_exact(student, features, tmp_path):
    model, tokenizer, seq2seq = student
    both = StepByStepCollator(tokenizer, is_seq2seq=seq2seq, mode="task_prefix")(features)
    # The same prompts without the rationale batch (standard mode itself has no prefix: compare like with like).
    label_only_collator = StepByStepCollator(tokenizer, is_seq2seq=seq2seq, mode="standard", label_prefix="predict: ")
    only_label = label_only_collator(features)

    def loss_with(alpha, batch):
        return _trainer(model, tokenizer, tmp_path, alpha, seq2seq, features).compute_loss(model, batch)

    with torch.no_grad():
        label_loss = model(**both["label"]).loss  # the model's own full-logits loss
        rationale_loss = model(**both["rationale"]).loss
        assert not torch.isclose(label_loss, rationale_loss)  # else the weighting test could not fail
        standard = loss_with(0.5, only_label)
        label_weight_1 = loss_with(1.0, both)
        label_weight_0 = loss_with(0.0, both)
        label_weight_03 = loss_with(0.3, both)
        target_only, _ = causal_target_loss(model, both["label"])
    # alpha = 1 is the label task alone, exactly.
    assert torch.equal(label_weight_1, standard) and torch.equal(standard, target_only)
    # Causal students: logits on target positions only, the same loss as the full-logits one.
    assert torch.allclose(label_weight_1, label_loss, rtol=0, atol=1e-6)
    assert torch.allclose(label_weight_0, rationale_loss, rtol=0, atol=1e-6)
    assert torch.allclose(label_weight_03, 0.3 * label_loss + 0.7 * rationale_loss, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        _trainer(model, tokenizer, tmp_path, 1.5, seq2seq, features)


def test_target_token_count_skips_prompts_and_the_unpredicted_first_token():
    labels = torch.tensor([[-100, -100, 5, 6], [-100, 7, -100, -100]])
    assert int(target_token_count(labels, is_encoder_decoder=False)) == 3
    seq2seq_labels = torch.tensor([[5, 6, -100], [7, -100, -100]])
    assert int(target_token_count(seq2seq_labels, is_encoder_decoder=True)) == 3
