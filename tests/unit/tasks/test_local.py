"""toolkit.tasks.local: load_local reads local files / folders and sends Hub ids to load_dataset."""

from __future__ import annotations

import json

import pytest

from toolkit.tasks.local import load_local
from toolkit.tasks.readers import DataFormatError


def test_load_local_formats(tmp_path):
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 0}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.csv").write_text("text,label\na,1\nb,0\n")
    (tmp_path / "d.tsv").write_text("text\tlabel\na\t1\nb\t0\n")
    for name in ("d.jsonl", "d.json", "d.csv", "d.tsv"):
        ds = load_local(tmp_path / name)
        assert ds.to_list() == rows, name
    ds = load_local(tmp_path / "d.jsonl")
    ds.to_parquet(str(tmp_path / "d.parquet"))
    assert load_local(tmp_path / "d.parquet").to_list() == rows
    ds.save_to_disk(str(tmp_path / "saved"))
    assert load_local(tmp_path / "saved").to_list() == rows


def test_load_local_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\nnot json\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2"):
        load_local(tmp_path / "bad.jsonl")
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_local(tmp_path / "x.xml")
    with pytest.raises(FileNotFoundError):
        load_local(str(tmp_path / "missing.jsonl"))


def test_load_local_hub_id_goes_to_load_dataset(monkeypatch):
    import datasets

    calls = []
    monkeypatch.setattr(
        datasets, "load_dataset", lambda name, split=None, revision=None: calls.append((name, split)) or "ds"
    )
    assert load_local("org/some-dataset", split="train") == "ds"
    assert calls == [("org/some-dataset", "train")]
