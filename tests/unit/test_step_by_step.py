"""toolkit.methods.step_by_step.training (+ _data, _scoring, _contamination): answer matching, the collator, the exact loss
weighting on both trainers, data, the contamination guard."""

from __future__ import annotations

import json

import pytest

from toolkit.methods.step_by_step import contamination, scoring
from toolkit.methods.step_by_step import data as sbsd
from toolkit.methods.step_by_step import training as sbs

CHOICES = ["british columbia", "body of water", "wooded area", "pay debts", "zoo"]


# ---- answer matching ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pred, expected",
    [
        ("wooded area", 2),
        ("Wooded Area.", 2),
        ("(c) wooded area", 2),
        ("c) wooded area", 2),
        ("(c)", 2),
        ("(a) wooded area", 2),  # the letter disagrees with a verbatim choice: the text wins
        ("the beaver goes to the wooded area for wood", 2),
        ("body", 1),  # contained in exactly one choice
        ("woded area", 2),  # typo: fuzzy match above the threshold
        ("a spaceship", None),
        ("", None),
        (None, None),
    ],
)
def test_match_choice(pred, expected):
    assert scoring.match_choice(pred, CHOICES) == expected


def test_match_choice_prefers_longest_contained_choice():
    assert scoring.match_choice("go to the ice cream shop", ["ice", "ice cream shop", "bar"]) == 1


@pytest.mark.parametrize(
    "pred, expected",
    [
        ("neutral", "neutral"),
        ("Answer: contradiction.", "contradiction"),
        ("entailment, not neutral", "entailment"),  # earliest label named
        ("entail", None),
        ("", None),
    ],
)
def test_nli_label(pred, expected):
    assert scoring.nli_label(pred) == expected


@pytest.mark.parametrize(
    "pred, correct",
    [
        ("(10 * 45)", True),
        ("( 10.0 * 45.0 )", True),
        ("45 * 10", True),  # same value, different equation: SVAMP is scored by value
        ("(10 * 45) = 450", True),  # the stated result is ignored, the equation is scored
        ("10 * 46", False),
        ("__import__('os')", False),  # never evaluated: the safe evaluator rejects it
        ("10 / 0", False),
        ("", False),
        (None, False),
    ],
)
def test_svamp_correct(pred, correct):
    assert scoring.is_correct("svamp", pred, "( 10.0 * 45.0 )") is correct


def test_svamp_tolerance_absorbs_division_rounding():
    assert scoring.is_correct("svamp", "(10 / 3)", "( 3.33333 )")
    assert not scoring.is_correct("svamp", "(10 / 3)", "( 3.3 )")


def test_cqa_and_nli_correct():
    assert scoring.is_correct("cqa", "(c) wooded area", "wooded area", CHOICES)
    assert not scoring.is_correct("cqa", "zoo", "wooded area", CHOICES)
    assert scoring.is_correct("esnli", "neutral", 1)
    assert not scoring.is_correct("anli1", "neutral", "contradiction")
    with pytest.raises(ValueError, match="choices"):
        scoring.is_correct("cqa", "zoo", "zoo", [])
    with pytest.raises(ValueError, match="unknown task"):
        scoring.is_correct("gsm8k", "1", "1")


def test_canonical_label():
    assert scoring.canonical_label("anli1", 2) == "contradiction"
    assert scoring.canonical_label("esnli", "Entailment.") == "entailment"
    assert scoring.canonical_label("cqa", "(c) wooded area", CHOICES) == "wooded area"
    assert scoring.canonical_label("svamp", " (1 + 2) ") == "(1 + 2)"
    assert scoring.canonical_label("svamp", None) is None
    with pytest.raises(ValueError, match="outside"):
        scoring.canonical_label("anli1", 3)


def test_score_predictions():
    rows = [{"gold": "neutral"}, {"gold": "entailment"}]
    acc, correct = scoring.score_predictions("esnli", ["neutral", "contradiction"], rows)
    assert acc == 0.5 and correct == [True, False]
    with pytest.raises(ValueError, match="2 rows"):
        scoring.score_predictions("esnli", ["neutral"], rows)


# ---- collator --------------------------------------------------------------------------------------------------
FEATURES = [
    {"input": "Jack had 8 apples and gave 3 away.", "label": "(8 - 3)", "rationale": "8 - 3 = 5 left."},
    {"input": "A man plays a guitar.", "label": "neutral", "rationale": "Not every song is music."},
]


@pytest.fixture(params=["t5", "llama"])
def student(request, tiny_t5_dir, tiny_llama_dir):
    from toolkit.models.students import load_student

    path = tiny_t5_dir if request.param == "t5" else tiny_llama_dir
    model, tok, seq2seq = load_student(str(path))
    model.eval()  # no dropout: losses must be reproducible
    return model, tok, seq2seq


def _decode_targets(tok, labels):
    return [tok.decode([t for t in row.tolist() if t != -100], skip_special_tokens=True) for row in labels]


def test_collator_builds_both_task_batches(student):
    _, tok, seq2seq = student
    collator = sbs.StepByStepCollator(tok, is_seq2seq=seq2seq, mode="task_prefix", max_rationale_length=64)
    batch = collator(FEATURES)
    assert set(batch) == {"label", "rationale"}
    for key, prefix, targets in (
        ("label", "predict: ", ["(8 - 3)", "neutral"]),
        ("rationale", "explain: ", [f["rationale"] for f in FEATURES]),
    ):
        sub = batch[key]
        assert sub["input_ids"].shape[0] == 2 and sub["labels"].shape[0] == 2
        assert _decode_targets(tok, sub["labels"]) == targets
        for i, f in enumerate(FEATURES):
            ids = sub["input_ids"][i][sub["attention_mask"][i].bool()]
            if not seq2seq:  # causal: the prompt part only (labels are -100 there)
                ids = ids[: int((sub["labels"][i] == -100).sum() - (sub["attention_mask"][i] == 0).sum())]
            assert tok.decode(ids, skip_special_tokens=True).strip().startswith((prefix + f["input"]).strip())
        if not seq2seq:  # completion-only loss: every supervised position is in the completion, eos included
            assert all(row[row != -100][-1] == tok.eos_token_id for row in sub["labels"])


def _prompt_text(tok, sub, i, seq2seq):
    ids = sub["input_ids"][i][sub["attention_mask"][i].bool()]
    if not seq2seq:  # causal: the prompt part only (labels are -100 there)
        ids = ids[: int((sub["labels"][i] == -100).sum() - (sub["attention_mask"][i] == 0).sum())]
    return tok.decode(ids, skip_special_tokens=True).strip()


def test_standard_label_task_has_no_prefix(student):
    """Issue 12 item 11: the paper's code trains the standard model on the bare input (no ``predict:``)."""
    _, tok, seq2seq = student
    batch = sbs.StepByStepCollator(tok, is_seq2seq=seq2seq, mode="standard")(FEATURES)
    for i, f in enumerate(FEATURES):  # the causal prompt ends with the student's answer cue ("Output:")
        text = _prompt_text(tok, batch["label"], i, seq2seq)
        assert text.startswith(f["input"].strip()) and "predict" not in text
    prefixed = sbs.StepByStepCollator(tok, is_seq2seq=seq2seq, mode="task_prefix")(FEATURES)
    assert _prompt_text(tok, prefixed["label"], 0, seq2seq).startswith("predict:")
    explicit = sbs.StepByStepCollator(tok, is_seq2seq=seq2seq, mode="standard", label_prefix="q: ")(FEATURES)
    assert _prompt_text(tok, explicit["label"], 0, seq2seq).startswith("q:")  # an explicit prefix is honoured
    assert sbs.label_prefix_for("standard") == "" and sbs.label_prefix_for("task_prefix") == "predict: "


def test_collator_standard_and_eval_batches(student):
    _, tok, seq2seq = student
    standard = sbs.StepByStepCollator(tok, is_seq2seq=seq2seq, mode="standard")
    assert set(standard(FEATURES)) == {"label"}
    prefix = sbs.StepByStepCollator(tok, is_seq2seq=seq2seq, mode="task_prefix")
    eval_features = [{"input": f["input"], "label": f["label"]} for f in FEATURES]
    assert set(prefix(eval_features)) == {"label"}  # validation rows: label task only
    with pytest.raises(ValueError, match="rationale"):
        prefix([FEATURES[0], {**FEATURES[1], "rationale": None}])
    with pytest.raises(ValueError, match="mode"):
        sbs.StepByStepCollator(tok, is_seq2seq=seq2seq, mode="distill")


# ---- loss weighting --------------------------------------------------------------------------------------------
def _trainer(model, tok, tmp_path, alpha, seq2seq):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    collator = sbs.StepByStepCollator(tok, is_seq2seq=seq2seq)
    return sbs.make_trainer(model, tok, args, is_seq2seq=seq2seq, collator=collator, train_examples=FEATURES,
                            alpha=alpha)  # fmt: skip


def test_make_trainer_picks_the_fields_trainer(student, tmp_path):
    """Seq2seq students train with transformers' Seq2SeqTrainer, causal ones with TRL's SFTTrainer (no re-tokenising)."""
    from transformers import Seq2SeqTrainer
    from trl import SFTTrainer

    model, tok, seq2seq = student
    trainer = _trainer(model, tok, tmp_path, 0.5, seq2seq)
    assert isinstance(trainer, Seq2SeqTrainer if seq2seq else SFTTrainer)
    assert trainer.train_dataset[0] == FEATURES[0]  # raw text: the collator builds both task batches


def test_loss_weighting_is_exact(student, tmp_path):
    import torch

    from toolkit.training.target_loss import causal_target_loss

    model, tok, seq2seq = student
    both = sbs.StepByStepCollator(tok, is_seq2seq=seq2seq, mode="task_prefix")(FEATURES)
    # The same prompts without the rationale batch (standard mode itself has no prefix: compare like with like).
    only_label = sbs.StepByStepCollator(tok, is_seq2seq=seq2seq, mode="standard", label_prefix="predict: ")(FEATURES)
    with torch.no_grad():
        label_loss = model(**both["label"]).loss  # the model's own full-logits loss
        rationale_loss = model(**both["rationale"]).loss
        assert not torch.isclose(label_loss, rationale_loss)  # else the weighting test could not fail
        standard = _trainer(model, tok, tmp_path, 0.5, seq2seq).compute_loss(model, only_label)
        a1 = _trainer(model, tok, tmp_path, 1.0, seq2seq).compute_loss(model, both)
        a0 = _trainer(model, tok, tmp_path, 0.0, seq2seq).compute_loss(model, both)
        a03 = _trainer(model, tok, tmp_path, 0.3, seq2seq).compute_loss(model, both)
        target_only, _ = causal_target_loss(model, both["label"])
    assert torch.equal(a1, standard) and torch.equal(standard, target_only)  # a=1 is the label task alone, exactly
    # Causal students: logits on target positions only, the same loss as the full-logits one.
    assert torch.allclose(a1, label_loss, rtol=0, atol=1e-6) and torch.allclose(a0, rationale_loss, rtol=0, atol=1e-6)
    assert torch.allclose(a03, 0.3 * label_loss + 0.7 * rationale_loss, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        _trainer(model, tok, tmp_path, 1.5, seq2seq)


# ---- data ------------------------------------------------------------------------------------------------------
def _rows():
    return [
        {"id": str(i), "input": f"q{i}", "gold": f"({i} + 1)", "choices": [], "teacher_label": f"({i} + 1)",
         "rationale": f"add {i} and 1", "parse_ok": True}
        for i in range(10)
    ]  # fmt: skip


def test_build_train_examples_counts_exclusions():
    rows = _rows()
    rows[0].update(parse_ok=False, teacher_label=None)
    rows[1].update(rationale=None)
    rows[2].update(teacher_label="(99 + 1)")
    ex, stats = sbsd.build_train_examples(rows, mode="task_prefix", label_source="llm")
    assert stats == {"n_rows": 10, "n_used": 8, "n_parse_failures": 1, "kept_parse_failure": 0,
                     "excluded_parse_failure": 1, "excluded_empty_rationale": 1}  # fmt: skip
    assert ex[0] == {"input": "q2", "label": "(99 + 1)", "rationale": "add 2 and 1"}  # teacher label, not gold
    teacher, stats = sbsd.build_train_examples(rows, mode="standard", label_source="llm")
    assert stats["n_used"] == 9 and "rationale" not in teacher[0]  # no rationale needed to learn the teacher label
    with pytest.raises(ValueError, match="no training examples"):
        sbsd.build_train_examples([rows[0]], mode="standard", label_source="llm")


def test_gold_standard_keeps_parse_failures_and_counts_them():
    """Issue 12 item 13: a parse failure has a valid gold label: the gold standard baseline trains on it."""
    rows = _rows()
    rows[0].update(parse_ok=False, teacher_label=None, rationale=None)
    rows[3].update(parse_ok=False, teacher_label=None)  # the cut text is still there, but no answer was found
    gt, stats = sbsd.build_train_examples(rows, mode="standard", label_source="gt")
    assert [e["label"] for e in gt] == [r["gold"] for r in rows] and "rationale" not in gt[0]
    assert stats["n_used"] == 10 and stats["kept_parse_failure"] == 2 and stats["excluded_parse_failure"] == 0
    for mode, source in (("standard", "llm"), ("task_prefix", "gt"), ("task_prefix", "llm")):
        _, stats = sbsd.build_train_examples(rows, mode=mode, label_source=source)
        assert stats["n_used"] == 8 and stats["excluded_parse_failure"] == 2 and stats["kept_parse_failure"] == 0
    # The opt-in "same examples for every run" setting drops them from the gold baseline too.
    _, stats = sbsd.build_train_examples(rows, mode="standard", label_source="gt", exclude_parse_failures=True)
    assert stats["n_used"] == 8 and stats["excluded_parse_failure"] == 2
    assert sbsd.parse_failure_accounting(rows) == {
        "standard/gt": {"kept": 2, "dropped": 0},
        "standard/llm": {"kept": 0, "dropped": 2},
        "task_prefix/gt": {"kept": 0, "dropped": 2},
        "task_prefix/llm": {"kept": 0, "dropped": 2},
    }
    assert sbsd.parse_failure_accounting(rows, exclude_parse_failures=True)["standard/gt"] == {"kept": 0, "dropped": 2}


def test_teacher_stats():
    rows = _rows()
    rows[0].update(parse_ok=False, teacher_label=None)
    rows[1].update(teacher_label="(7 * 7)")
    stats = scoring.teacher_stats("svamp", rows)
    assert stats["n_parsed"] == 9 and stats["parse_rate"] == 0.9
    assert stats["teacher_accuracy_parsed"] == pytest.approx(8 / 9)
    assert stats["teacher_accuracy_all"] == pytest.approx(0.8)


def test_carve_dev_and_subsample_are_deterministic():
    rows = _rows()
    train, dev = sbsd.carve_dev(rows, 0.2, seed=1)
    assert len(dev) == 2 and len(train) == 8 and not {r["id"] for r in train} & {r["id"] for r in dev}
    assert sbsd.carve_dev(rows, 0.2, seed=1) == (train, dev)
    assert sbsd.carve_dev(rows, 3, seed=1)[1].__len__() == 3
    half, full = sbsd.subsample(rows, 0.5, seed=3), sbsd.subsample(rows, 1.0, seed=3)
    assert len(half) == 5 and len(full) == 10 and all(r in full for r in half)
    assert all(r in half for r in sbsd.subsample(rows, 0.3, seed=3))  # nested: the data-size curve grows a set
    assert len(sbsd.subsample(rows, 1.0, max_rows=4, seed=3)) == 4
    with pytest.raises(ValueError):
        sbsd.carve_dev(rows, 0, seed=1)
    with pytest.raises(ValueError):
        sbsd.subsample(rows, 0.0)


def _saved_rows():
    return [
        {"input": "Premise: a man plays. Hypothesis: a person plays.", "label": 0, "rationale": "A man is a person.",
         "teacher_label": "entailment", "parse_ok": True, "teacher_id": "hf:tiny", "template_hash": "abc123"},
        {"input": "Premise: a dog runs. Hypothesis: a cat runs.", "label": 2, "rationale": None,
         "teacher_label": None, "parse_ok": False, "teacher_id": "hf:tiny", "template_hash": "abc123"},
    ]  # fmt: skip


def test_load_rows_from_saved_jsonl_and_arrow(tmp_path):
    import datasets

    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in _saved_rows()))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(_saved_rows())}).save_to_disk(str(tmp_path / "dd"))
    for source in (str(jsonl), str(tmp_path / "dd")):
        rows, lineage = sbsd.load_rows(source, "train", task="anli1")
        assert [r["gold"] for r in rows] == ["entailment", "contradiction"]
        assert [r["parse_ok"] for r in rows] == [True, False] and rows[1]["teacher_label"] is None
        assert lineage["teacher_id"] == ["hf:tiny"] and lineage["template_hash"] == ["abc123"]
    with pytest.raises(ValueError, match="splits"):
        sbsd.load_rows(str(tmp_path / "dd"), "test", task="anli1")
    with pytest.raises(FileNotFoundError):
        sbsd.load_rows(str(tmp_path / "missing"), "train", task="anli1")
    with pytest.raises(ValueError, match="does not match"):
        sbsd.load_rows("palm:cqa", "train", task="svamp")


@pytest.mark.parametrize(
    "completion, number, expected",
    [
        ("84 / 2 = 42. The answer is (84 / 2).\n\nQ: next shot. The answer is (1 + 1).", "42", "(84 / 2)"),
        ("So 3 + 4 is 7. So the answer is 3 + 4", "7", "3 + 4"),
        ("The answer is (84 / 2).", "41", "41"),  # disagrees with the parsed number: keep the number
        ("The answer is 42 apples.", "42", "42"),  # not an expression
    ],
)
def test_svamp_teacher_equation(completion, number, expected):
    assert sbsd.svamp_teacher_equation(completion, number) == expected


def test_load_rows_palm_svamp_targets_are_equations(data_root):
    rows, lineage = sbsd.load_rows("palm:svamp", "train", task="svamp")
    assert len(rows) == 800 and lineage["teacher_id"] == [sbsd.PALM_TEACHER_ID]
    assert rows[0]["gold"] == "( 84.0 / 2.0 )" and rows[0]["teacher_label"] == "(84 / 2)"
    failures = [r for r in rows if not r["parse_ok"]]
    assert failures and all(r["teacher_label"] is None for r in failures)  # never an empty label
    numbers, _ = sbsd.load_rows("palm:svamp", "train", task="svamp", svamp_equations=False)
    assert numbers[0]["gold"] == "42" and numbers[0]["teacher_label"] == "42"


# ---- test contamination (issue 12 item 12) --------------------------------------------------------------------
def _job_folder(tmp_path, split):
    """A folder laid out like a data_gen/rationales.py output generated from ``split``."""
    import datasets

    out = tmp_path / f"rationales-{split}"
    datasets.Dataset.from_list(_saved_rows()).save_to_disk(str(out / "dataset"))
    (out / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _saved_rows()))
    (out / "config.json").write_text(json.dumps({"job": {"dataset": "palm_anli1", "split": split}}))
    return out


def test_generation_split_reads_the_provenance(tmp_path):
    assert contamination.generation_split("palm:svamp", "test") == "test"
    out = _job_folder(tmp_path, "test")
    for source in (out, out / "dataset", out / "data.jsonl"):
        assert contamination.generation_split(str(source), "train") == "test"
    assert contamination.generation_split(str(_job_folder(tmp_path, "train") / "dataset"), "train") == "train"
    plain = tmp_path / "plain.jsonl"
    plain.write_text("{}\n")
    assert contamination.generation_split(str(plain), "train") is None
    rows, _ = sbsd.load_rows(str(out), "train", task="anli1")  # the job folder itself loads its dataset/
    assert len(rows) == 2


def test_rationales_from_the_test_split_are_refused(tmp_path):
    test = ("palm:anli1", "test")
    clean = dict(test=test, seen_inputs=["a", "b"], test_inputs=["c"])
    report = contamination.check_contamination(train=("palm:anli1", "valid"), **clean)
    assert report["problems"] == [] and report["train_generated_from"] == "valid"
    generated_from_test = str(_job_folder(tmp_path, "test") / "dataset")
    for kwargs in (
        dict(train=(generated_from_test, "train")),  # a data_gen rationale set made from the test split
        dict(train=("palm:anli1", "test")),  # the PaLM test rationales
        dict(train=("palm:anli1", "valid"), dev=test),  # model selection on the test split
    ):
        with pytest.raises(contamination.ContaminationError, match="generated from the test split"):
            contamination.check_contamination(**kwargs, **clean)
    with pytest.raises(contamination.ContaminationError, match="1 of 2 test inputs"):
        contamination.check_contamination(
            train=("x.jsonl", "train"), test=test, seen_inputs=["a", "b"], test_inputs=["b", "z"]
        )
    report = contamination.check_contamination(train=(generated_from_test, "train"), **clean, allow=True)
    assert report["allowed"] and report["problems"]  # the explicit override runs, and says so


def test_saved_dataset_dict_dev_aliases(tmp_path):
    import datasets

    rows = datasets.Dataset.from_list(_saved_rows())
    datasets.DatasetDict({"train": rows, "validation": rows}).save_to_disk(str(tmp_path / "dd"))
    assert len(sbsd.load_rows(str(tmp_path / "dd"), "dev", task="anli1")[0]) == 2
