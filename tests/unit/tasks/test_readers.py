"""toolkit.tasks.readers: strict readers whose errors name the file and line."""

from __future__ import annotations

import pickle

import pytest

from toolkit.tasks.readers import DataFormatError, read_aligned, read_delimited, read_jsonl, read_lines


def test_read_lines_terminators(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one \r\ntwo\rstill two\nthree")  # CRLF, a lone CR inside a line, no final newline
    assert read_lines(path) == ["one ", "two\rstill two", "three"]
    path.write_bytes(b"x\n\n")  # a real empty last line survives
    assert read_lines(path) == ["x", ""]
    path.write_bytes(b"")
    assert read_lines(path) == []


def test_read_aligned_mismatch_names_both_files(tmp_path):
    source, reference = tmp_path / "src.txt", tmp_path / "ref.txt"
    source.write_text("1\n2\n3\n")
    reference.write_text("1\n2\n")
    with pytest.raises(DataFormatError) as err:
        read_aligned({"src": source, "ref": reference})
    assert str(source) in str(err.value) and str(reference) in str(err.value)
    assert err.value.line == 3


def test_read_jsonl_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3,\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:4: invalid JSON"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: expected a JSON object"):
        read_jsonl(path)


def test_read_delimited_wrong_field_count(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,2\n"multi\nline",3\n4,5,6\n')
    with pytest.raises(DataFormatError, match=r"t\.csv:5: expected 2 fields"):
        read_delimited(path)


def test_data_format_error_pickles():
    err = pickle.loads(pickle.dumps(DataFormatError("f.txt", 7, "bad")))
    assert str(err) == "f.txt:7: bad" and err.line == 7
