"""toolkit.tasks.intent_slot: SNIPS, SLURP span -> BIO, the SLURP split helper."""

from __future__ import annotations

import json

import pytest

from toolkit.tasks.intent_slot import load_slurp, load_snips, spans_to_bio, split_slurp
from toolkit.tasks.readers import DataFormatError


def test_spans_to_bio_hand_example():
    tokens, tags = spans_to_bio("wake me up at [time : five am] [date : this week]")
    assert tokens == ["wake", "me", "up", "at", "five", "am", "this", "week"]
    assert tags == ["O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"]


def test_spans_to_bio_edge_cases():
    # punctuation glued to a span stays in the same whitespace token
    tokens, tags = spans_to_bio("send email to [person : robert], what time is dinner")
    assert tokens[3] == "robert," and tags[3] == "B-person" and tags[4] == "O"
    # adjacent spans of the same type are separate entities (B then B)
    assert spans_to_bio("[time : two] [time : four pm]")[1] == ["B-time", "B-time", "I-time"]
    assert spans_to_bio("no slots here") == (["no", "slots", "here"], ["O", "O", "O"])
    with pytest.raises(ValueError, match="malformed"):
        spans_to_bio("book [place_name : paris")


def test_snips(data_root):
    splits = {s: load_snips(s) for s in ("train", "valid", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 13084, "valid": 700, "test": 700}
    intents = set(splits["train"]["intent"])
    assert len(intents) == 7 and set(splits["test"]["intent"]) <= intents
    row = splits["test"][0]
    assert row["tokens"] == ["add", "sabrina", "salerno", "to", "the", "grime", "instrumentals", "playlist"]
    assert row["slot_tags"] == ["O", "B-artist", "I-artist", "O", "O", "B-playlist", "I-playlist", "O"]
    assert row["intent"] == "AddToPlaylist" and row["text"] == " ".join(row["tokens"])
    assert all(len(t) == len(s) for t, s in zip(splits["valid"]["tokens"], splits["valid"]["slot_tags"]))
    assert not any(t != t.strip() for t in splits["train"]["intent"])


def test_snips_tag_count_mismatch(tmp_path):
    folder = tmp_path / "snips" / "test"
    folder.mkdir(parents=True)
    (folder / "seq.in").write_text("play a song \nbook it \n")
    (folder / "seq.out").write_text("O O O \nO \n")
    (folder / "label").write_text("PlayMusic\nBookRestaurant\n")
    with pytest.raises(DataFormatError, match=r"seq\.out:2: 1 tags for 2 tokens"):
        load_snips("test", data_dir=tmp_path)


def test_slurp(data_root):
    ds = load_slurp("devel")
    # the evaluated label is scenario_action (59 in devel), not the raw field (71, some broken like "query")
    assert len(ds) == 2033 and len(set(ds["intent"])) == 59 and len(set(ds["raw_intent"])) == 71
    assert all(intent.startswith(f"{scenario}_") for intent, scenario in zip(ds["intent"], ds["scenario"]))
    assert "query" in ds["raw_intent"] and "query" not in ds["intent"]
    first = ds[0]  # "siri what is one [currency_name : american dollar] in [currency_name : japanese yen]"
    assert first["intent"] == "qa_currency" and first["scenario"] == "qa"
    assert first["slot_tags"][4:6] == ["B-currency_name", "I-currency_name"]
    assert first["slot_tags"][7:] == ["B-currency_name", "I-currency_name"]
    assert all(len(t) == len(s) for t, s in zip(ds["tokens"], ds["slot_tags"]))


def test_slurp_split_is_grouped_and_stable(data_root):
    ds = load_slurp("devel")
    first, second = split_slurp(ds), split_slurp(ds)
    assert sum(len(v) for v in first.values()) == 2033
    assert all(first[k]["id"] == second[k]["id"] for k in first)
    texts = {k: {t.lower() for t in v["text"]} for k, v in first.items()}
    assert not (texts["train"] & texts["test"]) and not (texts["train"] & texts["dev"])
    assert not (texts["dev"] & texts["test"])
    assert load_slurp("test")["id"] == first["test"]["id"]


def test_slurp_malformed_annotation_names_line(tmp_path):
    (tmp_path / "slurp").mkdir()
    rows = [
        {"slurp_id": 1, "sentence_annotation": "wake me at [time : six]", "intent": "alarm_set"},
        {"slurp_id": 2, "sentence_annotation": "book [place_name : paris", "intent": "transport_ticket"},
    ]
    (tmp_path / "slurp" / "devel.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataFormatError, match=r"devel\.jsonl:2: malformed span annotation"):
        load_slurp("devel", data_dir=tmp_path)
