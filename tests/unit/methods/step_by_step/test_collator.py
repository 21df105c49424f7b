"""The two-task batch: prefixes, targets, completion-only labels, the standard mode's bare input."""

from __future__ import annotations

import pytest

from toolkit.methods.step_by_step.collator import StepByStepCollator
from toolkit.methods.step_by_step.config import StepByStepConfig


def _decode_targets(tokenizer, labels):
    return [tokenizer.decode([t for t in row.tolist() if t != -100], skip_special_tokens=True) for row in labels]


def _prompt_text(tokenizer, task_batch, i, seq2seq):
    ids = task_batch["input_ids"][i][task_batch["attention_mask"][i].bool()]
    if not seq2seq:  # causal: the prompt part only (labels are -100 there)
        n_padding = (task_batch["attention_mask"][i] == 0).sum()
        ids = ids[: int((task_batch["labels"][i] == -100).sum() - n_padding)]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def test_collator_builds_both_task_batches(student, features):
    _, tokenizer, seq2seq = student
    collator = StepByStepCollator(tokenizer, is_seq2seq=seq2seq, mode="task_prefix", max_rationale_length=64)
    batch = collator(features)
    assert set(batch) == {"label", "rationale"}
    for key, prefix, targets in (
        ("label", "predict: ", ["(8 - 3)", "neutral"]),
        ("rationale", "explain: ", [f["rationale"] for f in features]),
    ):
        task_batch = batch[key]
        assert task_batch["input_ids"].shape[0] == 2 and task_batch["labels"].shape[0] == 2
        assert _decode_targets(tokenizer, task_batch["labels"]) == targets
        for i, feature in enumerate(features):
            prompt = _prompt_text(tokenizer, task_batch, i, seq2seq)
            assert prompt.startswith((prefix + feature["input"]).strip())
        if not seq2seq:  # completion-only loss: every supervised position is in the completion, eos included
            assert all(row[row != -100][-1] == tokenizer.eos_token_id for row in task_batch["labels"])


def test_standard_label_task_has_no_prefix(student, features):
    """The paper's code trains the standard model on the bare input (no ``predict:``)."""
    _, tokenizer, seq2seq = student
    batch = StepByStepCollator(tokenizer, is_seq2seq=seq2seq, mode="standard")(features)
    for i, feature in enumerate(features):  # the causal prompt ends with the student's answer cue ("Output:")
        text = _prompt_text(tokenizer, batch["label"], i, seq2seq)
        assert text.startswith(feature["input"].strip()) and "predict" not in text
    prefixed = StepByStepCollator(tokenizer, is_seq2seq=seq2seq, mode="task_prefix")(features)
    assert _prompt_text(tokenizer, prefixed["label"], 0, seq2seq).startswith("predict:")
    explicit = StepByStepCollator(tokenizer, is_seq2seq=seq2seq, mode="standard", label_prefix="q: ")(features)
    assert _prompt_text(tokenizer, explicit["label"], 0, seq2seq).startswith("q:")  # an explicit prefix is honoured


def test_collator_standard_and_eval_batches(student, features):
    _, tokenizer, seq2seq = student
    standard = StepByStepCollator(tokenizer, is_seq2seq=seq2seq, mode="standard")
    assert set(standard(features)) == {"label"}
    prefix = StepByStepCollator(tokenizer, is_seq2seq=seq2seq, mode="task_prefix")
    eval_features = [{"input": f["input"], "label": f["label"]} for f in features]
    assert set(prefix(eval_features)) == {"label"}  # validation rows: label task only
    with pytest.raises(ValueError, match="rationale"):
        prefix([features[0], {**features[1], "rationale": None}])
    with pytest.raises(ValueError, match="mode"):
        StepByStepCollator(tokenizer, is_seq2seq=seq2seq, mode="distill")


def test_from_config_takes_the_runs_prefixes_and_caps(student, features):
    _, tokenizer, seq2seq = student
    config = StepByStepConfig(mode="task_prefix", rationale_prefix="why: ", max_label_length=2)
    collator = StepByStepCollator.from_config(tokenizer, config, is_seq2seq=seq2seq)
    assert (collator.label_prefix, collator.rationale_prefix) == ("predict: ", "why: ")
    batch = collator(features)
    assert _prompt_text(tokenizer, batch["rationale"], 0, seq2seq).startswith("why:")
    assert all(int((row != -100).sum()) <= 2 for row in batch["label"]["labels"])  # the label cap, eos included
