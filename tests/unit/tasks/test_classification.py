"""toolkit.tasks.classification: SST-2, AG News, R8, 20 Newsgroups on the real data."""

from __future__ import annotations

import collections

import pytest

from toolkit.tasks.classification import (
    load_20newsgroups,
    load_ag_news,
    load_r8,
    load_sst2,
    strip_newsgroup_header,
)
from toolkit.tasks.readers import DataFormatError


@pytest.fixture(scope="session")
def ng20(data_root):
    """Both 20NG splits, read once per session from the 14 MB tarball (headers stripped)."""
    return {s: load_20newsgroups(s) for s in ("train", "test")}


def test_sst2(data_root):
    sizes = {s: len(load_sst2(s)) for s in ("train", "dev", "test")}
    assert sizes == {"train": 67349, "dev": 872, "test": 1821}
    test = load_sst2("test")
    assert test.features["label"].names == ["negative", "positive"]
    assert test[0]["text"] == "uneasy mishmash of styles and genres ." and test[0]["label"] == 0
    assert collections.Counter(test["label"]) == {0: 917, 1: 904}  # counted with awk on the raw file
    assert not any(t.endswith((" ", "\r")) for t in test["text"])  # CRLF + trailing spaces removed


def test_ag_news(data_root):
    test, train = load_ag_news("test"), load_ag_news("train")
    assert (len(test), len(train)) == (7600, 10001)
    names = ["World", "Sports", "Business", "Sci/Tech"]
    assert test.features["label"].names == train.features["label"].names == names
    assert collections.Counter(test["label"]) == {i: 1900 for i in range(4)}
    # test.csv row 1 is class "3" (1-based) = Business; the train TSV uses names (Sci/Tech for row 1)
    assert test[0]["label"] == names.index("Business") and test[0]["text"].startswith("Unions representing")
    assert train[0]["label"] == names.index("Sci/Tech")
    assert collections.Counter(train["label"])[names.index("Sci/Tech")] == 2538
    # backslash newline escapes become spaces; CSV-quoted TSV rows lose their quotes
    assert not any("\\" in t for t in test["text"][:2000])
    kc = [t for t in train["text"] if t.startswith("NEW YORK (Reuters) - Kimberly-Clark Corp.")]
    assert len(kc) == 1 and 'HREF="http' in kc[0]
    titled = load_ag_news("test", with_title=True)
    assert titled[0]["text"].startswith("Fears for T N pension after talks. Unions")


def test_r8(data_root):
    train, test = load_r8("train"), load_r8("test")
    assert (len(train), len(test)) == (5485, 2189)
    names = ["acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade"]
    assert train.features["label"].names == test.features["label"].names == names
    assert collections.Counter(train["label"])[names.index("earn")] == 2840
    assert train[0]["label"] == names.index("earn") and train[0]["text"].startswith("champion products")


def test_20newsgroups_counts_and_classes(ng20):
    assert (len(ng20["train"]), len(ng20["test"])) == (11314, 7532)
    names = ng20["train"].features["label"].names
    assert len(names) == 20 and names == ng20["test"].features["label"].names and names == sorted(names)
    assert len(set(ng20["train"]["label"])) == 20
    # headers are gone: every raw post starts with "From:"; stripped, only 40 bodies do (forwarded mails)
    starts = collections.Counter(t.split(":", 1)[0] for t in ng20["train"]["text"] if ":" in t[:20])
    assert starts["From"] < 100 and starts["Subject"] < 100


def test_20newsgroups_raw_keeps_headers(data_root, ng20):
    raw = load_20newsgroups("test", strip_headers=False)
    assert len(raw) == 7532 and raw["label"] == ng20["test"]["label"]
    first = raw[0]["text"]
    assert first.startswith("From:") and "Subject:" in first.split("\n\n", 1)[0]
    assert strip_newsgroup_header(first).strip() == ng20["test"][0]["text"]


def test_strip_newsgroup_header():
    assert strip_newsgroup_header("From: a@b\nSubject: x\n\nBody\n\nmore") == "Body\n\nmore"
    assert strip_newsgroup_header("no blank line") == ""


def _fake_root(tmp_path, rel, text):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_bad_labels_name_file_and_line(tmp_path):
    _fake_root(tmp_path, "sst2/dev.tsv", "sentence\tlabel\ngood .\t1\nbad .\t2\n")
    with pytest.raises(DataFormatError, match=r"dev\.tsv:3: label must be 0 or 1"):
        load_sst2("dev", data_dir=tmp_path)
    _fake_root(tmp_path, "ag_news/classes.txt", "World\nSports\n")
    _fake_root(tmp_path, "ag_news/test.csv", '"1","t","d"\n"5","t","d"\n')
    with pytest.raises(DataFormatError, match=r"test\.csv:2: class index must be 1\.\.2"):
        load_ag_news("test", data_dir=tmp_path)
    _fake_root(tmp_path, "r8/R8/train.txt", "earn\tsome text\nno tab here\n")
    _fake_root(tmp_path, "r8/R8/test.txt", "earn\tx\n")
    with pytest.raises(DataFormatError, match=r"train\.txt:2: expected 'label<TAB>text'"):
        load_r8("train", data_dir=tmp_path)
