"""toolkit.tasks.qa: CommonsenseQA from the PaLM folder."""

from __future__ import annotations

import json

import pytest

from toolkit.tasks.qa import load_cqa
from toolkit.tasks.readers import DataFormatError


def test_cqa(data_root):
    train, test = load_cqa("train"), load_cqa("test")
    assert (len(train), len(test)) == (9741, 1221)
    assert all(len(c) == 5 for c in train["choices"])
    assert train[0]["answer"] == "math problem" and train[0]["choices"][3] == "math problem"


def test_cqa_answer_not_in_choices(tmp_path):
    folder = tmp_path / "distill_step_by_step_palm" / "cqa"
    folder.mkdir(parents=True)
    row = {"id": "x", "question": "q?", "choices": ["a", "b"], "answer": "c"}
    (folder / "cqa_test.json").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataFormatError, match=r"cqa_test\.json:1: answer 'c' is not one of the choices"):
        load_cqa("test", data_dir=tmp_path)
