"""The test-contamination guard: provenance of a rationale set and inputs shared with the test rows."""

from __future__ import annotations

import json

import datasets
import pytest

from toolkit.methods.step_by_step import contamination, data


def _job_folder(tmp_path, split, rows):
    """A folder laid out like a data_gen/rationales.py output generated from ``split``."""
    out = tmp_path / f"rationales-{split}"
    datasets.Dataset.from_list(rows).save_to_disk(str(out / "dataset"))
    (out / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "config.json").write_text(json.dumps({"job": {"dataset": "palm_anli1", "split": split}}))
    return out


def test_generation_split_reads_the_provenance(saved_rows, tmp_path):
    assert contamination.generation_split("palm:svamp", "test") == "test"
    out = _job_folder(tmp_path, "test", saved_rows)
    for source in (out, out / "dataset", out / "data.jsonl"):
        assert contamination.generation_split(str(source), "train") == "test"
    assert (
        contamination.generation_split(str(_job_folder(tmp_path, "train", saved_rows) / "dataset"), "train") == "train"
    )
    plain = tmp_path / "plain.jsonl"
    plain.write_text("{}\n")
    assert contamination.generation_split(str(plain), "train") is None
    rows, _ = data.load_rows(str(out), "train", task="anli1")  # the job folder itself loads its dataset/
    assert len(rows) == 2


def test_rationales_from_the_test_split_are_refused(saved_rows, tmp_path):
    test = ("palm:anli1", "test")
    clean = dict(test=test, seen_inputs=["a", "b"], test_inputs=["c"])
    report = contamination.check_contamination(train=("palm:anli1", "valid"), **clean)
    assert report["problems"] == [] and report["train_generated_from"] == "valid"
    generated_from_test = str(_job_folder(tmp_path, "test", saved_rows) / "dataset")
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
