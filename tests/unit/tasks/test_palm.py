"""toolkit.tasks.palm: the PaLM-540B rationale folder, completion parsing, student inputs."""

from __future__ import annotations

import json
import logging

import pytest

from toolkit.tasks.math import numbers_match
from toolkit.tasks.palm import format_input, load_palm, parse_completion
from toolkit.tasks.readers import DataFormatError

logger = logging.getLogger(__name__)

CQA_CHOICES = ["park", "coloring book", "garden center", "math problem", "gravity"]


def test_parse_cqa_cuts_continuation_and_maps_letter():
    text = (
        "Of the above choices, only math problem fits. So the answer is (d) math problem.\n\n"
        "Q: What is the best way to get rid of a headache?\nAnswer Choices:\n(a) aspirin\nA: So the answer is (a) aspirin"
    )
    rationale, label = parse_completion("cqa", text, CQA_CHOICES)
    assert rationale == "Of the above choices, only math problem fits."
    assert label == "math problem"
    assert parse_completion("cqa", text)[1] == "math problem"  # without choices: the text after the letter
    # the letter wins over a garbled choice text; out-of-range letters and "either ... or" fail
    assert parse_completion("cqa", "So the answer is (b) colouring books.", CQA_CHOICES)[1] == "coloring book"
    assert parse_completion("cqa", "So the answer is (h) moon.", CQA_CHOICES)[1] is None
    assert parse_completion("cqa", "So the answer is either (a) park or (e) gravity.", CQA_CHOICES)[1] is None
    assert parse_completion("cqa", "So the answer is gravity.", CQA_CHOICES)[1] == "gravity"
    assert parse_completion("cqa", "So the answer is the moon.", CQA_CHOICES)[1] is None


def test_parse_svamp_and_nli():
    rationale, lab = parse_completion(
        "svamp", "So 79 - 53 = 26. The answer is (79 - 53).\n\nQ: There are 120 students. The answer is (9)"
    )
    assert (rationale, lab) == ("So 79 - 53 = 26.", "26")
    assert parse_completion("svamp", "So Ed lost more than 19 marbles.") == ("So Ed lost more than 19 marbles.", None)
    # "So the answer is" beats an earlier "The answer is"; ", so the answer is" is found case-insensitively
    rationale, lab = parse_completion("anli1", "He was born in 1894. The answer is 71. So the answer is entailment.")
    assert lab == "entailment" and rationale == "He was born in 1894. The answer is 71."
    assert parse_completion("anli1", "It was filmed in 1971, so the answer is contradiction.") == (
        "It was filmed in 1971",
        "contradiction",
    )
    rationale, lab = parse_completion(
        "esnli", "The man is on a scooter.\nAnswer: neutral\n\nPremise: A man.\nHypothesis: x"
    )
    assert (rationale, lab) == ("The man is on a scooter.", "neutral")
    assert parse_completion("esnli", "Answer: maybe")[1] is None
    with pytest.raises(ValueError, match="unknown PaLM task"):
        parse_completion("gsm8k", "The answer is 3.")


def test_format_input():
    cqa = format_input("cqa", {"question": "Q?", "choices": ["x", "y"]})
    assert cqa == "Q?\nAnswer Choices:\n(a) x\n(b) y"
    assert format_input("svamp", {"question": "How many?"}) == "How many?"
    assert format_input("esnli", {"premise": "P.", "hypothesis": "H."}) == "Premise: P.\nHypothesis: H."


EXPECTED = {
    ("cqa", "train"): 9741,
    ("cqa", "test"): 1221,
    ("svamp", "train"): 800,
    ("svamp", "test"): 200,
    ("anli1", "valid"): 1000,
    ("anli1", "test"): 1000,
    ("esnli", "valid"): 9842,
    ("esnli", "test"): 9824,
}


@pytest.mark.parametrize("task, split", list(EXPECTED))
def test_load_palm_counts_and_parse_rates(data_root, task, split):
    ds = load_palm(task, split)
    assert len(ds) == EXPECTED[(task, split)]
    for col in ("label", "input", "teacher_completion", "rationale", "teacher_label", "parse_ok"):
        assert col in ds.column_names
    ok = sum(ds["parse_ok"])
    rate = ok / len(ds)
    labels = ds["teacher_label"]
    if task == "svamp":
        acc = sum(numbers_match(t, g) for t, g in zip(labels, ds["label"])) / len(ds)
    else:
        acc = sum(t == g for t, g in zip(labels, ds["label"])) / len(ds)
    logger.warning("PaLM %s/%s: parse rate %.4f (%d/%d), teacher accuracy %.4f", task, split, rate, ok, len(ds), acc)
    # measured: cqa 0.981/0.987, svamp 0.970/0.980, anli1 0.999/1.0, esnli 0.9996/1.0; the failures are real
    # (CQA "either (a) ... or (e) ...", SVAMP "(some - 7) + 2" or truncated expressions, e-SNLI loops)
    assert rate > 0.95
    assert acc > 0.6  # a label misaligned with its input would drop accuracy to chance (~0.2-0.33)
    assert all((lab is None) == (not ok_) for lab, ok_ in zip(labels, ds["parse_ok"]))
    assert all(lab != "" for lab in labels)


def test_palm_rows_checked_by_hand(data_root):
    cqa = load_palm("cqa", "train")[0]
    assert cqa["question"].startswith('"There are 10 apples on an apple tree.')
    assert cqa["label"] == "math problem" and cqa["teacher_label"] == "math problem"
    assert cqa["teacher_completion"].split("So the answer is")[1].startswith(" (d) math problem.")
    svamp = load_palm("svamp", "test")[1]  # Jack's emails: 10 - (3 + 6)
    assert svamp["label"] == "1" and svamp["teacher_label"] == "1"
    anli = load_palm("anli1", "valid")[0]
    assert anli["id"] == "bf628cf5-6948-4595-a6d0-daf99beb47b9"
    assert anli["label"] == "contradiction" and anli["teacher_label"] == "contradiction"


def _fake_palm(root, n_inputs, completion_chunks):
    folder = root / "distill_step_by_step_palm" / "svamp"
    (folder / "llm").mkdir(parents=True)
    with open(folder / "svamp_test.json", "w") as handle:
        for i in range(n_inputs):
            handle.write(json.dumps({"input": f"Problem {i}?", "label": f"( {i}.0 + 1.0 )"}) + "\n")
    for i, chunk in enumerate(completion_chunks):
        (folder / "llm" / f"test_CoT_{i}.json").write_text(json.dumps(chunk))


def test_load_palm_concatenates_chunks_in_index_order(tmp_path):
    chunks = [[f"x. The answer is ({i} + 1)." for i in range(k, k + 2)] for k in range(0, 24, 2)]  # 12 files
    _fake_palm(tmp_path, 24, chunks)
    ds = load_palm("svamp", "test", data_dir=tmp_path)
    # file 10 must come after file 9 (numeric, not lexicographic, order) for labels to line up
    assert ds["teacher_label"] == ds["label"] == [str(i + 1) for i in range(24)]


def test_load_palm_count_mismatch_errors(tmp_path):
    _fake_palm(tmp_path, 3, [["The answer is (1)."] * 2])
    with pytest.raises(DataFormatError, match=r"svamp_test\.json.*3 input rows but 2 completions"):
        load_palm("svamp", "test", data_dir=tmp_path)
