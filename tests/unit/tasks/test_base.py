"""toolkit.tasks.base: data root resolution, strict readers, load_local, deterministic_split."""

from __future__ import annotations

import json
import pickle

import pytest

from toolkit.tasks.base import (
    DataFormatError,
    data_root,
    deterministic_split,
    load_local,
    read_aligned,
    read_delimited,
    read_jsonl,
    read_lines,
)


def test_data_root_resolution_order(tmp_path, monkeypatch):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    arg_dir = tmp_path / "arg"
    arg_dir.mkdir()
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(env_dir))
    assert data_root() == env_dir
    assert data_root(arg_dir) == arg_dir


def test_data_root_missing_tells_user_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="TOOLKIT_DATA_DIR"):
        data_root()


def test_data_root_default_is_beside_repo(monkeypatch):
    import toolkit

    monkeypatch.delenv("TOOLKIT_DATA_DIR", raising=False)
    from pathlib import Path

    expected = Path(toolkit.__file__).resolve().parents[1].parent / "shared" / "data"
    if expected.is_dir():
        assert data_root() == expected
    else:
        with pytest.raises(FileNotFoundError, match=str(expected)):
            data_root()


def test_read_lines_terminators(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"one \r\ntwo\rstill two\nthree")  # CRLF, a lone CR inside a line, no final newline
    assert read_lines(p) == ["one ", "two\rstill two", "three"]
    p.write_bytes(b"x\n\n")  # a real empty last line survives
    assert read_lines(p) == ["x", ""]
    p.write_bytes(b"")
    assert read_lines(p) == []


def test_read_aligned_mismatch_names_both_files(tmp_path):
    a, b = tmp_path / "src.txt", tmp_path / "ref.txt"
    a.write_text("1\n2\n3\n")
    b.write_text("1\n2\n")
    with pytest.raises(DataFormatError) as err:
        read_aligned({"src": a, "ref": b})
    assert str(a) in str(err.value) and str(b) in str(err.value)
    assert err.value.line == 3


def test_read_jsonl_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3,\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:4: invalid JSON"):
        read_jsonl(p)
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: expected a JSON object"):
        read_jsonl(p)


def test_read_delimited_wrong_field_count(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('a,b\n1,2\n"multi\nline",3\n4,5,6\n')
    with pytest.raises(DataFormatError, match=r"t\.csv:5: expected 2 fields"):
        read_delimited(p)


def test_data_format_error_pickles():
    err = pickle.loads(pickle.dumps(DataFormatError("f.txt", 7, "bad")))
    assert str(err) == "f.txt:7: bad" and err.line == 7


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


def _toy(n=100):
    from datasets import Dataset

    return Dataset.from_dict({"x": list(range(n)), "g": [i // 4 for i in range(n)]})


def test_deterministic_split_is_stable_and_disjoint():
    ds = _toy()
    a = deterministic_split(ds, dev_size=10, test_size=0.2, seed=1)
    b = deterministic_split(ds, dev_size=10, test_size=0.2, seed=1)
    c = deterministic_split(ds, dev_size=10, test_size=0.2, seed=2)
    assert {k: len(v) for k, v in a.items()} == {"train": 70, "dev": 10, "test": 20}
    assert all(a[k]["x"] == b[k]["x"] for k in a)
    assert a["test"]["x"] != c["test"]["x"]
    seen = [x for k in a for x in a[k]["x"]]
    assert sorted(seen) == list(range(100))
    assert a["train"]["x"] == sorted(a["train"]["x"])  # original order kept within a split


def test_deterministic_split_group_integrity():
    ds = _toy()
    parts = deterministic_split(ds, dev_size=10, test_size=10, seed=3, group_column="g")
    owner = {}
    for name, split in parts.items():
        for g in split["g"]:
            assert owner.setdefault(g, name) == name, f"group {g} straddles splits"
    # groups have 4 rows: targets are reached, overshooting by less than one group
    assert 10 <= len(parts["dev"]) < 14 and 10 <= len(parts["test"]) < 14


def test_deterministic_split_rejects_bad_sizes():
    ds = _toy(10)
    with pytest.raises(ValueError, match="no training rows"):
        deterministic_split(ds, dev_size=5, test_size=5)
    with pytest.raises(ValueError, match="group_column"):
        deterministic_split(ds, dev_size=1, test_size=1, group_column="nope")
    with pytest.raises(ValueError):
        deterministic_split(ds, dev_size=1.5, test_size=1)


def test_load_local_hub_id_goes_to_load_dataset(monkeypatch):
    import datasets

    calls = []
    def fake_load_dataset(name, split=None, revision=None):
        calls.append((name, split, revision))
        return "ds"

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_local("org/some-dataset", split="train") == "ds"
    assert load_local("org/some-dataset", split="train", revision="v2") == "ds"
    assert calls == [("org/some-dataset", "train", None), ("org/some-dataset", "train", "v2")]
