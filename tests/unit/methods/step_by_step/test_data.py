"""Rationale sources, splits, training rows per mode and the parse-failure accounting; a run's prepared data."""

from __future__ import annotations

import dataclasses
import json

import datasets
import pytest

from toolkit.methods.step_by_step import data
from toolkit.methods.step_by_step.config import StepByStepConfig
from toolkit.methods.step_by_step.contamination import ContaminationError


def _rows():
    return [
        {
            "id": str(i),
            "input": f"q{i}",
            "gold": f"({i} + 1)",
            "choices": [],
            "teacher_label": f"({i} + 1)",
            "rationale": f"add {i} and 1",
            "parse_ok": True,
        }
        for i in range(10)
    ]


def test_build_train_examples_counts_exclusions():
    rows = _rows()
    rows[0].update(parse_ok=False, teacher_label=None)
    rows[1].update(rationale=None)
    rows[2].update(teacher_label="(99 + 1)")
    examples, stats = data.build_train_examples(rows, mode="task_prefix", label_source="llm")
    assert stats == {
        "n_rows": 10,
        "n_used": 8,
        "n_parse_failures": 1,
        "kept_parse_failure": 0,
        "excluded_parse_failure": 1,
        "excluded_empty_rationale": 1,
    }
    assert examples[0] == {"input": "q2", "label": "(99 + 1)", "rationale": "add 2 and 1"}  # teacher label, not gold
    teacher, stats = data.build_train_examples(rows, mode="standard", label_source="llm")
    assert stats["n_used"] == 9 and "rationale" not in teacher[0]  # no rationale needed to learn the teacher label
    with pytest.raises(ValueError, match="no training examples"):
        data.build_train_examples([rows[0]], mode="standard", label_source="llm")


def test_gold_standard_keeps_parse_failures_and_counts_them():
    """A parse failure has a valid gold label: the gold standard baseline trains on it."""
    rows = _rows()
    rows[0].update(parse_ok=False, teacher_label=None, rationale=None)
    rows[3].update(parse_ok=False, teacher_label=None)  # the cut text is still there, but no answer was found
    gt, stats = data.build_train_examples(rows, mode="standard", label_source="gt")
    assert [e["label"] for e in gt] == [r["gold"] for r in rows] and "rationale" not in gt[0]
    assert stats["n_used"] == 10 and stats["kept_parse_failure"] == 2 and stats["excluded_parse_failure"] == 0
    for mode, source in (("standard", "llm"), ("task_prefix", "gt"), ("task_prefix", "llm")):
        _, stats = data.build_train_examples(rows, mode=mode, label_source=source)
        assert stats["n_used"] == 8 and stats["excluded_parse_failure"] == 2 and stats["kept_parse_failure"] == 0
    # The opt-in "same examples for every run" setting drops them from the gold baseline too.
    _, stats = data.build_train_examples(rows, mode="standard", label_source="gt", exclude_parse_failures=True)
    assert stats["n_used"] == 8 and stats["excluded_parse_failure"] == 2
    assert data.parse_failure_accounting(rows) == {
        "standard/gt": {"kept": 2, "dropped": 0},
        "standard/llm": {"kept": 0, "dropped": 2},
        "task_prefix/gt": {"kept": 0, "dropped": 2},
        "task_prefix/llm": {"kept": 0, "dropped": 2},
    }
    assert data.parse_failure_accounting(rows, exclude_parse_failures=True)["standard/gt"] == {"kept": 0, "dropped": 2}


def test_carve_dev_and_subsample_are_deterministic():
    rows = _rows()
    train, dev = data.carve_dev(rows, 0.2, seed=1)
    assert len(dev) == 2 and len(train) == 8 and not {r["id"] for r in train} & {r["id"] for r in dev}
    assert data.carve_dev(rows, 0.2, seed=1) == (train, dev)
    assert len(data.carve_dev(rows, 3, seed=1)[1]) == 3
    half = data.subsample(rows, 0.5, seed=3)
    full = data.subsample(rows, 1.0, seed=3)
    assert len(half) == 5 and len(full) == 10 and all(r in full for r in half)
    assert all(r in half for r in data.subsample(rows, 0.3, seed=3))  # nested: the data-size curve grows a set
    assert len(data.subsample(rows, 1.0, max_rows=4, seed=3)) == 4
    with pytest.raises(ValueError):
        data.carve_dev(rows, 0, seed=1)
    with pytest.raises(ValueError):
        data.subsample(rows, 0.0)


def test_load_rows_from_saved_jsonl_and_arrow(saved_rows, tmp_path):
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in saved_rows))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(saved_rows)}).save_to_disk(str(tmp_path / "dd"))
    for source in (str(jsonl), str(tmp_path / "dd")):
        rows, lineage = data.load_rows(source, "train", task="anli1")
        assert [r["gold"] for r in rows] == ["entailment", "contradiction"]
        assert [r["parse_ok"] for r in rows] == [True, False] and rows[1]["teacher_label"] is None
        assert lineage["teacher_id"] == ["hf:tiny"] and lineage["template_hash"] == ["abc123"]
    with pytest.raises(ValueError, match="splits"):
        data.load_rows(str(tmp_path / "dd"), "test", task="anli1")
    with pytest.raises(FileNotFoundError):
        data.load_rows(str(tmp_path / "missing"), "train", task="anli1")
    with pytest.raises(ValueError, match="does not match"):
        data.load_rows("palm:cqa", "train", task="svamp")


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
    assert data.svamp_teacher_equation(completion, number) == expected


def test_load_rows_palm_svamp_targets_are_equations(data_root):
    rows, lineage = data.load_rows("palm:svamp", "train", task="svamp")
    assert len(rows) == 800 and lineage["teacher_id"] == [data.PALM_TEACHER_ID]
    assert rows[0]["gold"] == "( 84.0 / 2.0 )" and rows[0]["teacher_label"] == "(84 / 2)"
    failures = [r for r in rows if not r["parse_ok"]]
    assert failures and all(r["teacher_label"] is None for r in failures)  # never an empty label
    numbers, _ = data.load_rows("palm:svamp", "train", task="svamp", svamp_equations=False)
    assert numbers[0]["gold"] == "42" and numbers[0]["teacher_label"] == "42"


def test_saved_dataset_dict_dev_aliases(saved_rows, tmp_path):
    rows = datasets.Dataset.from_list(saved_rows)
    datasets.DatasetDict({"train": rows, "validation": rows}).save_to_disk(str(tmp_path / "dd"))
    assert len(data.load_rows(str(tmp_path / "dd"), "dev", task="anli1")[0]) == 2


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _nli_rows(prefix: str, n: int, *, failed: int | None = None) -> list[dict]:
    return [
        {
            "input": f"Premise: {prefix} {i}. Hypothesis: a thing.",
            "label": i % 3,
            "rationale": None if i == failed else f"because {i}",
            "teacher_label": None if i == failed else ["entailment", "neutral", "contradiction"][i % 3],
            "parse_ok": i != failed,
        }
        for i in range(n)
    ]


def test_prepare_data_carves_validation_and_reports_what_it_used(tmp_path):
    train = _write_jsonl(tmp_path / "train.jsonl", _nli_rows("train", 10, failed=0))
    test = _write_jsonl(tmp_path / "test.jsonl", _nli_rows("test", 4))
    config = StepByStepConfig(
        task="anli1", mode="task_prefix", train_source=train, test_source=test, dev_size=2, max_test_samples=3
    )
    prepared = data.prepare_data(config)
    assert len(prepared["dev_rows"]) == 2 and len(prepared["train_rows"]) == 8 and len(prepared["test_rows"]) == 3
    dev_inputs = {row["input"] for row in prepared["dev_rows"]}
    assert not dev_inputs & {row["input"] for row in prepared["train_rows"]}
    report = prepared["report"]
    assert report["n_test"] == 3 and report["data_splits"]["test"] == f"3 of 4 rows of {test} [test]"
    assert "carved" in report["data_splits"]["dev"] and report["test_contamination"]["problems"] == []
    parse_failure_in_train = any(row["input"].startswith("Premise: train 0.") for row in prepared["train_rows"])
    assert report["n_train"] == 8 - parse_failure_in_train  # the rationale task drops the parse failure
    assert all(set(example) == {"input", "label", "rationale"} for example in prepared["examples"])


def test_prepare_data_refuses_test_inputs_in_training(tmp_path):
    rows = _nli_rows("same", 6)
    train = _write_jsonl(tmp_path / "train.jsonl", rows)
    test = _write_jsonl(tmp_path / "test.jsonl", rows[:2])
    config = StepByStepConfig(task="anli1", train_source=train, test_source=test, dev_size=2)
    with pytest.raises(ContaminationError, match="test inputs also train or select"):
        data.prepare_data(config)
    allowed = dataclasses.replace(config, allow_test_contamination=True)
    assert data.prepare_data(allowed)["report"]["test_contamination"]["allowed"]
