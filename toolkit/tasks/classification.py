"""Text classification: SST-2, AG News, Reuters R8 and 20 Newsgroups as ``text, label`` datasets.

``label`` is always a ``datasets.ClassLabel`` whose names are the same for every split of a corpus (they
are derived from the whole corpus or its class list, never from the split being loaded), so label ids
from a train split mean the same thing on test.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import tarfile
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Value

from toolkit.tasks.base import data_root
from toolkit.tasks.readers import DataFormatError, read_delimited_numbered, read_lines, require_file

logger = logging.getLogger(__name__)

SST2_LABELS = ("negative", "positive")
SST2_FILES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test-labeled.tsv"}
AG_NEWS_SPLITS = ("train", "test")
R8_SPLITS = ("train", "test")
NG20_SPLITS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}


def _make_dataset(texts: list[str], labels: list[int], names: list[str]) -> Dataset:
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(names))})
    return Dataset.from_dict({"text": texts, "label": labels}, features=features)


def load_sst2(split: str = "train", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load GLUE SST-2: train 67,349 / dev 872 / test 1,821 (``test-labeled.tsv``).

    The TSVs hold ``sentence<TAB>label`` (0 = negative, 1 = positive) with a header; sentences contain bare
    double quotes, so they are read without CSV quoting. Trailing spaces are stripped.
    """
    if split not in SST2_FILES:
        raise ValueError(f"SST-2 split must be one of {tuple(SST2_FILES)}, got {split!r}")
    path = data_root(data_dir) / "sst2" / SST2_FILES[split]
    rows = read_delimited_numbered(path, delimiter="\t", quoting=csv.QUOTE_NONE)
    texts, labels = [], []
    for lineno, row in rows:
        if "sentence" not in row or "label" not in row:
            raise DataFormatError(path, 1, "expected a header with columns 'sentence' and 'label'")
        if row["label"].strip() not in ("0", "1"):
            raise DataFormatError(path, lineno, f"label must be 0 or 1, got {row['label']!r}")
        texts.append(row["sentence"].strip())
        labels.append(int(row["label"]))
    return _make_dataset(texts, labels, list(SST2_LABELS))


def ag_news_label_names(data_dir: str | os.PathLike | None = None) -> list[str]:
    """AG News class names from ``classes.txt`` (line ``k`` is class index ``k``, 1-based in ``test.csv``)."""
    names = [n.strip() for n in read_lines(data_root(data_dir) / "ag_news" / "classes.txt") if n.strip()]
    if not names:
        raise DataFormatError(data_root(data_dir) / "ag_news" / "classes.txt", 1, "no class names")
    return names


def _clean_ag_news(text: str) -> str:
    # The AG corpus escapes newlines as a backslash ("...a second\team of rocketeers"); turn them into
    # spaces and collapse runs of whitespace. Everything else (HTML remnants like "#39;") is left as given.
    return re.sub(r"\s+", " ", text.replace("\\", " ")).strip()


def load_ag_news(split: str = "test", data_dir: str | os.PathLike | None = None, with_title: bool = False) -> Dataset:
    """Load AG News: ``test`` 7,600 (``test.csv``) or ``train`` 10,001 (the ALPS 10k training subset).

    Label encoding differs per file: ``test.csv`` rows are ``"<class index 1-4>","title","description"``;
    the training subset ``alps_train_subset_10k.tsv`` is ``description<TAB>class name`` without a header
    (CSV-quoted where the text contains quotes). Both map to ``classes.txt`` order
    (World, Sports, Business, Sci/Tech).

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: Data root override.
        with_title: Prepend the title to the test descriptions. Off by default because the training subset
            has descriptions only, and train/test text should look alike.
    """
    if split not in AG_NEWS_SPLITS:
        raise ValueError(f"AG News split must be one of {AG_NEWS_SPLITS}, got {split!r}")
    names = ag_news_label_names(data_dir)
    folder = data_root(data_dir) / "ag_news"
    texts, labels = [], []
    if split == "test":
        path = folder / "test.csv"
        rows = read_delimited_numbered(path, header=["class", "title", "description"])
        for lineno, row in rows:
            try:
                index = int(row["class"]) - 1
            except ValueError:
                index = -1
            if not 0 <= index < len(names):
                raise DataFormatError(path, lineno, f"class index must be 1..{len(names)}, got {row['class']!r}")
            text = f"{row['title']}. {row['description']}" if with_title else row["description"]
            texts.append(_clean_ag_news(text))
            labels.append(index)
    else:
        if with_title:
            raise ValueError("the AG News training subset has no titles; use with_title=False")
        path = folder / "alps_train_subset_10k.tsv"
        rows = read_delimited_numbered(path, delimiter="\t", header=["text", "label"])
        for lineno, row in rows:
            if row["label"] not in names:
                raise DataFormatError(path, lineno, f"unknown class {row['label']!r} (classes.txt has {names})")
            texts.append(_clean_ag_news(row["text"]))
            labels.append(names.index(row["label"]))
    return _make_dataset(texts, labels, names)


def _read_r8(path: Path) -> list[tuple[str, str]]:
    out = []
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep or not label.strip():
            raise DataFormatError(path, lineno, "expected 'label<TAB>text'")
        out.append((label.strip(), text.strip()))
    return out


def load_r8(split: str = "train", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load Reuters R8 (``r8/R8/<split>.txt``, ``label<TAB>text``): train 5,485 / test 2,189, 8 classes.

    Label names are the sorted union over both split files, so ids agree across splits.
    """
    if split not in R8_SPLITS:
        raise ValueError(f"R8 split must be one of {R8_SPLITS}, got {split!r}")
    folder = data_root(data_dir) / "r8" / "R8"
    rows = {s: _read_r8(folder / f"{s}.txt") for s in R8_SPLITS}
    names = sorted({label for part in rows.values() for label, _ in part})
    index = {n: i for i, n in enumerate(names)}
    return _make_dataset([t for _, t in rows[split]], [index[lab] for lab, _ in rows[split]], names)


def strip_newsgroup_header(text: str) -> str:
    """Drop the mail/news header block: everything up to the first blank line.

    This is the usual "headers removed" setting (the same rule as scikit-learn's
    ``fetch_20newsgroups(remove=("headers",))``): headers such as ``From:``/``Subject:``/``Newsgroups:``
    name the newsgroup or its regular posters and make the task trivially easy. Footers and quoted
    replies are kept. A post without a blank line is returned empty, as in scikit-learn.
    """
    _, _, body = text.partition("\n\n")
    return body


def read_20ng_index(data_dir: str | os.PathLike | None = None) -> list[tuple[str, str, str]]:
    """Rows of ``20ng_index.txt``: ``(member path inside the tarball, split, label)``, in file order."""
    path = data_root(data_dir) / "20newsgroups" / "20ng_index.txt"
    out = []
    splits = {v: k for k, v in NG20_SPLITS.items()}
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or parts[1] not in splits:
            raise DataFormatError(path, lineno, "expected 'path<TAB>20news-bydate-{train,test}<TAB>label'")
        rel, split_dir, label = parts
        # index paths look like data/20ng/20news-bydate-test/alt.atheism/53068; the tarball starts at the
        # 20news-bydate-* folder
        marker = rel.find(split_dir + "/")
        if marker < 0:
            raise DataFormatError(path, lineno, f"path {rel!r} does not contain {split_dir}/")
        out.append((rel[marker:], splits[split_dir], label))
    return out


def load_20newsgroups(
    split: str = "train", data_dir: str | os.PathLike | None = None, strip_headers: bool = True
) -> Dataset:
    """Load 20 Newsgroups (bydate): train 11,314 / test 7,532, 20 classes.

    Posts are read straight from ``20news-bydate.tar.gz`` (one streaming pass, nothing cached) in the
    order of ``20ng_index.txt``, decoded as Latin-1 (the posts predate UTF-8; Latin-1 never fails).
    Label names are the 20 newsgroup names, sorted, from the whole index.

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: Data root override.
        strip_headers: Remove each post's header block (see :func:`strip_newsgroup_header`).

    Raises:
        DataFormatError: A post listed in the index is missing from the tarball.
    """
    if split not in NG20_SPLITS:
        raise ValueError(f"20NG split must be one of {tuple(NG20_SPLITS)}, got {split!r}")
    index = read_20ng_index(data_dir)
    names = sorted({label for _, _, label in index})
    wanted = {member: label for member, s, label in index if s == split}
    tar_path = require_file(data_root(data_dir) / "20newsgroups" / "20news-bydate.tar.gz")
    posts: dict[str, str] = {}
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar:  # streaming: the gzip is decompressed once, front to back
            if member.isfile() and member.name in wanted:
                member_file = tar.extractfile(member)
                posts[member.name] = member_file.read().decode("latin-1") if member_file is not None else ""
    missing = [m for m in wanted if m not in posts]
    if missing:
        raise DataFormatError(
            tar_path, None, f"{len(missing)} indexed posts missing from the tarball, e.g. {missing[0]}"
        )
    label_id = {n: i for i, n in enumerate(names)}
    texts, labels = [], []
    for member, label in wanted.items():  # dicts keep insertion order = index order
        text = posts[member]
        texts.append((strip_newsgroup_header(text) if strip_headers else text).strip())
        labels.append(label_id[label])
    logger.info("20NG %s: %d posts from %s", split, len(texts), tar_path)
    return _make_dataset(texts, labels, names)
