"""toolkit.methods.multitask.data: which rows each split holds, where they came from, the train-only label set."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from toolkit.methods.multitask import data

# ------------------------------------------------------------------------------------------------------- data


def test_load_task_splits_from_folder(tmp_path):
    for split, n in (("train", 8), ("test", 4)):
        with open(tmp_path / f"{split}.jsonl", "w") as fh:
            for i in range(n):
                fh.write(json.dumps({"text": f"t{i}", "label": "pos" if i % 2 else "neg"}) + "\n")
    sp = data.load_task_splits(f"{tmp_path}:topic", train_size=5, test_size=-1)
    assert (len(sp.train), len(sp.test)) == (5, 4)
    assert sp.labels == ["neg", "pos"] and sp.name == f"{tmp_path.name}:topic"
    assert sp.dev is None and "official" in sp.origin["test"]
    with pytest.raises(ValueError, match="must look like"):
        data.parse_task_spec("snips")


def _write_jsonl(path, rows):
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def _intent_rows(intents):
    return [{"tokens": ["w", str(i)], "slot_tags": ["O", "O"], "intent": intent} for i, intent in enumerate(intents)]


def test_label_set_is_built_from_train_only(tmp_path):
    """An intent / topic that only the test file shows never enters the label set."""
    _write_jsonl(tmp_path / "train.jsonl", _intent_rows(["PlayMusic", "GetWeather"] * 3))
    _write_jsonl(tmp_path / "test.jsonl", _intent_rows(["PlayMusic", "SearchScreening"]))
    sp = data.load_task_splits(f"{tmp_path}:intent_slots")
    assert sp.labels == ["GetWeather", "PlayMusic"]
    topic = tmp_path / "topic"
    topic.mkdir()
    _write_jsonl(topic / "train.jsonl", [{"text": "x", "label": "neg"}, {"text": "y", "label": "pos"}])
    _write_jsonl(topic / "test.jsonl", [{"text": "z", "label": "neutral"}])
    assert data.load_task_splits(f"{topic}:topic").labels == ["neg", "pos"]


def test_official_splits_and_path_overrides(tmp_path):
    """Official dev/test files are used, --test_path/--dev_path replace them, carving is a fallback."""
    folder = tmp_path / "src"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", _intent_rows(["A", "B"] * 10))
    _write_jsonl(folder / "valid.jsonl", _intent_rows(["A"] * 3))
    _write_jsonl(folder / "test.jsonl", _intent_rows(["B"] * 4))
    other = tmp_path / "other_test.jsonl"
    _write_jsonl(other, _intent_rows(["A", "B", "A", "B", "A"]))

    sp = data.load_task_splits(f"{folder}:intent")
    assert (len(sp.train), len(sp.dev), len(sp.test)) == (20, 3, 4)  # official: nothing carved from train
    assert sp.origin["dev"].endswith("valid (official)") and sp.origin["test"].endswith("test (official)")

    sp = data.load_task_splits(f"{folder}:intent", test_path=str(other), dev_path=str(other))
    assert (len(sp.train), len(sp.dev), len(sp.test)) == (20, 5, 5)
    assert "--test_path" in sp.origin["test"] and "--dev_path" in sp.origin["dev"]

    only_train = tmp_path / "only_train"
    only_train.mkdir()
    _write_jsonl(only_train / "train.jsonl", _intent_rows(["A", "B"] * 10))
    sp = data.load_task_splits(f"{only_train}:intent", test_size=4, need_dev=True)
    assert (len(sp.train), len(sp.dev), len(sp.test)) == (12, 4, 4)  # carved: no official test, no path given
    assert sp.origin["test"].startswith("carved") and sp.origin["dev"].startswith("carved")
    assert not set(sp.train["tokens"][i][1] for i in range(12)) & set(t[1] for t in sp.test["tokens"])
    sp = data.load_task_splits(f"{only_train}:intent", test_path=str(other))
    assert (len(sp.train), len(sp.test)) == (20, 5) and sp.dev is None  # a given test file: nothing carved
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_task_splits(f"{folder}:intent", test_path=str(tmp_path / "missing.jsonl"))


def test_every_row_has_an_id_that_survives_carving_and_subsampling(tmp_path):
    """Rows without ids get ``<source>-<split>-<line>`` before carving, so an id names one item of the source file."""
    _write_jsonl(tmp_path / "train.jsonl", _intent_rows(["A", "B"] * 10))
    sp = data.load_task_splits(f"{tmp_path}:intent", train_size=6, test_size=4, need_dev=True, seed=3)
    ids = {part: list(getattr(sp, part)["id"]) for part in ("train", "dev", "test")}
    assert all(len(set(rows)) == len(rows) for rows in ids.values())
    assert not set(ids["train"]) & set(ids["test"]) and not set(ids["dev"]) & set(ids["test"])
    for part, rows in ids.items():  # the id is the row's line in train.jsonl: its tokens say the same
        assert [f"{tmp_path.name}-train-{tokens[1]}" for tokens in getattr(sp, part)["tokens"]] == rows
    again = data.load_task_splits(f"{tmp_path}:intent", train_size=6, test_size=4, need_dev=True, seed=3)
    assert list(again.test["id"]) == ids["test"]
    _write_jsonl(tmp_path / "given.jsonl", [{**row, "id": f"own{i}"} for i, row in enumerate(_intent_rows("AB"))])
    given = data.load_task_splits(f"{tmp_path}:intent", test_path=str(tmp_path / "given.jsonl"))
    assert list(given.test["id"]) == ["own0", "own1"]  # a file's own ids are kept


def test_load_task_splits_real(data_root):
    snips = data.load_task_splits("snips:intent_slots", train_size=20, test_size=10, data_dir=str(data_root))
    assert len(snips.labels) == 7 and len(snips.train) == 20 and len(snips.test) == 10
    news = data.load_task_splits("20ng:topic", train_size=5, test_size=5, data_dir=str(data_root))
    assert len(news.labels) == 20 and isinstance(news.train[0]["label"], str) and news.train[0]["label"] in news.labels
    assert news.origin["test"] == "20ng:test (official)" and news.dev is None
    assert snips.origin["dev"] == "snips:valid (official)" and len(snips.dev) == 10
    slurp = data.load_task_splits("slurp:intent", train_size=-1, test_size=100, data_dir=str(data_root))
    assert len(slurp.test) == 100 and len(slurp.train) == 2033 - 100 and slurp.origin["test"].startswith("carved")
    assert set(slurp.labels) == set(slurp.train["intent"])  # train only: the carved test never adds intents
    assert all(row_id.startswith("20ng-test-") for row_id in news.test["id"]) and len(set(slurp.test["id"])) == 100


def test_truncate_texts(tiny_llama_dir):
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    long = "the dog runs home quickly " * 20
    short = data.truncate_texts([long, "hi"], tok, 8)
    assert len(tok(short[0], add_special_tokens=False)["input_ids"]) <= 9 and short[1] == "hi"
    assert data.truncate_texts([long], tok, 0) == [long]
