"""toolkit.methods.multitask.formats (+ multitask_data, multitask_mixture): answer formats, slots <-> BIO on real data, snapping, scoring, task mixtures."""

from __future__ import annotations

import json

import pytest

from toolkit.evaluation.label_scoring import snap_label
from toolkit.methods.multitask import data
from toolkit.methods.multitask import formats as mt
from toolkit.methods.multitask import mixture as mix

# ------------------------------------------------------------------------------------------------ slots <-> BIO


def test_bio_to_slots_and_back_simple():
    tokens = "play the beatles on spotify".split()
    tags = ["O", "B-artist", "I-artist", "O", "B-service"]
    slots = mt.bio_to_slots(tokens, tags)
    assert slots == [("artist", "the beatles"), ("service", "spotify")]
    assert mt.format_slots(slots) == "artist=the beatles; service=spotify"
    back, stats = mt.slots_to_bio(tokens, mt.parse_slots(mt.format_slots(slots))[0])
    assert back == tags and stats == {"placed": 2, "not_found": 0}


def test_slots_to_bio_repeated_values_and_slots():
    # "the" occurs twice; the slot is the second one: the cursor after the previous match must find it.
    tokens = "add the song to the playlist".split()
    back, _ = mt.slots_to_bio(tokens, [("music_item", "song"), ("playlist_owner", "the")])
    assert back == ["O", "O", "B-music_item", "O", "B-playlist_owner", "O"]
    # The same slot with the same value twice takes two different occurrences, never the same words twice.
    tokens = "from paris to paris".split()
    back, stats = mt.slots_to_bio(tokens, [("city", "paris"), ("city", "paris"), ("city", "paris")])
    assert back == ["O", "B-city", "O", "B-city"]
    assert stats == {"placed": 2, "not_found": 1}  # the third copy has nowhere to go: counted
    # Out-of-order emission still lands (fallback search from the start); case-insensitive.
    back, stats = mt.slots_to_bio("Book A table in Paris".split(), [("city", "paris"), ("party", "a")])
    assert back == ["O", "B-party", "O", "O", "B-city"] and stats["not_found"] == 0


def test_slots_not_in_tokens_are_counted():
    tags, stats = mt.slots_to_bio("play jazz".split(), [("genre", "jazz"), ("artist", "miles davis"), ("x", "")])
    assert tags == ["O", "B-genre"]
    assert stats == {"placed": 1, "not_found": 2}


def test_parse_slots_malformed_and_none():
    assert mt.parse_slots("none") == ([], 0)
    assert mt.parse_slots("") == ([], 0)
    slots, bad = mt.parse_slots("a=x y; garbage; =v; b= ; c=z=w")
    assert slots == [("a", "x y"), ("c", "z=w")] and bad == 3


def test_bio_to_slots_errors():
    with pytest.raises(ValueError, match="2 tokens but 1 tags"):
        mt.bio_to_slots(["a", "b"], ["O"])


def _roundtrip_failures(rows):
    failures = 0
    for row in rows:
        text = mt.format_slots(mt.bio_to_slots(row["tokens"], row["slot_tags"]))
        tags, stats = mt.slots_to_bio(row["tokens"], mt.parse_slots(text)[0])
        # Gold tags re-read with conlleval semantics (a stray I- opens a span) are what the text encodes.
        failures += tags != _normalised(row["slot_tags"]) or stats["not_found"] > 0
    return failures


def _normalised(tags):
    from toolkit.evaluation.metrics import bio_spans

    out = ["O"] * len(tags)
    for typ, s, e in bio_spans(tags):
        out[s] = f"B-{typ}"
        out[s + 1 : e] = [f"I-{typ}"] * (e - s - 1)
    return out


def test_slot_roundtrip_on_real_snips(data_root):
    from toolkit.tasks.intent_slot import load_snips

    rows = list(load_snips("test", data_dir=data_root)) + list(load_snips("valid", data_dir=data_root))
    assert len(rows) == 1400
    failures = _roundtrip_failures(rows)
    # Ambiguity is possible in principle (a value whose words also occur earlier, untagged); on SNIPS it is rare.
    assert failures <= 0.01 * len(rows), f"{failures} / {len(rows)} SNIPS rows do not round-trip"


def test_slot_roundtrip_on_real_slurp(data_root):
    from toolkit.tasks.intent_slot import load_slurp

    rows = list(load_slurp("devel", data_dir=data_root))
    assert _roundtrip_failures(rows) <= 0.02 * len(rows)


# ---------------------------------------------------------------------------------------------- prompts / parse


def test_build_prompt_and_completion():
    row = {"tokens": "play jazz".split(), "slot_tags": ["O", "B-genre"], "intent": "PlayMusic"}
    prompt = mt.build_prompt("intent_slots", row, ["PlayMusic", "GetWeather"])
    assert "Utterance: play jazz" in prompt and "Intents: PlayMusic, GetWeather" in prompt
    assert "Intents:" not in mt.build_prompt("intent", row, [f"i{k}" for k in range(71)])  # too many to list
    assert mt.build_completion("intent_slots", row) == "intent: PlayMusic | slots: genre=jazz"
    assert mt.build_completion("slots", {"tokens": ["hi"], "slot_tags": ["O"]}) == "slots: none"
    assert mt.build_completion("topic", {"text": "x", "label": 1}, ["a", "b"]) == "topic: b"
    with pytest.raises(ValueError, match="unknown task type"):
        mt.build_prompt("ner", row)


def test_parse_answer():
    assert mt.parse_answer("intent: PlayMusic | slots: a=b\nintent: junk") == {"intent": "PlayMusic", "slots": "a=b"}
    assert mt.parse_answer("no key here") == {}
    assert mt.parse_answer("Topic: sci.space") == {"topic": "sci.space"}


def test_snap_label():
    labels = ["PlayMusic", "GetWeather", "BookRestaurant"]
    assert snap_label("PlayMusic", labels) == ("PlayMusic", True)
    assert snap_label(" playmusic ", labels) == ("PlayMusic", True)  # whitespace + case normalised: a label
    assert snap_label("Get Weather", labels) == ("GetWeather", False)  # snapped, but counted invalid
    assert snap_label("", labels) == (None, False)
    assert snap_label(None, labels) == (None, False)


def test_score_task_strict_vs_snapped_and_exact_match():
    rows = [
        {"tokens": "play jazz".split(), "slot_tags": ["O", "B-genre"], "intent": "PlayMusic"},
        {"tokens": "weather in paris".split(), "slot_tags": ["O", "O", "B-city"], "intent": "GetWeather"},
        {"tokens": "play rock".split(), "slot_tags": ["O", "B-genre"], "intent": "PlayMusic"},
    ]
    outputs = [
        "intent: PlayMusic | slots: genre=jazz",  # all right
        "intent: get weather | slots: city=paris; country=france",  # snapped intent, one hallucinated slot
        "garbage",  # invalid, no slots field
    ]
    m, preds = mt.score_task("intent_slots", rows, outputs, ["GetWeather", "PlayMusic"])
    # Headline = strict: "get weather" is not a label, so it is wrong there; snapped credits it, in its own key.
    assert m["intent_accuracy"] == pytest.approx(1 / 3)
    assert m["intent_accuracy_snapped"] == pytest.approx(2 / 3)
    assert "intent_accuracy_strict" not in m
    assert m["intent_invalid"] == 2
    assert m["slots_not_found"] == 1 and m["slots_missing_field"] == 1
    assert m["slot_f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))  # tp=2, fp=0, fn=1
    assert m["exact_match"] == pytest.approx(1 / 3)  # strict intent too: row 2's snapped intent does not count
    assert preds[1]["tags"] == ["O", "O", "B-city"] and preds[2]["label"] is None
    assert preds[1]["label"] is None and preds[1]["snapped_label"] == "GetWeather"
    with pytest.raises(ValueError, match="needs its label set"):
        mt.score_task("intent", rows, outputs)
    with pytest.raises(ValueError, match="3 gold rows but 1 outputs"):
        mt.score_task("slots", rows, outputs[:1])


def test_score_topic_macro_f1_and_two_model_em():
    rows = [{"text": "t", "label": "a"}, {"text": "t", "label": "b"}]
    m, _ = mt.score_task("topic", rows, ["topic: a", "topic: a"], ["a", "b"])
    assert m["topic_accuracy"] == 0.5 and m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    intent = [{"label": "x", "gold": "x"}, {"label": "y", "gold": "x"}]
    slots = [{"tags": ["O"], "gold_tags": ["O"]}, {"tags": ["O"], "gold_tags": ["O"]}]
    assert mt.two_model_exact_match(intent, slots) == 0.5
    with pytest.raises(ValueError):
        mt.two_model_exact_match(intent, slots[:1])


def test_headline_accuracy_is_strict_snapped_is_a_labelled_column():
    """Issue 12 item 14: out-of-set answers snapped to the closest label must not lift the headline accuracy."""
    from toolkit.methods.multitask import report

    rows = [{"text": "t", "label": lab} for lab in ("sci.space", "rec.autos", "rec.autos", "sci.space")]
    outputs = ["topic: sci.space", "topic:  REC.AUTOS ", "topic: rec autos", "topic: space"]
    m, preds = mt.score_task("topic", rows, outputs, ["rec.autos", "sci.space"])
    assert [p["label"] for p in preds] == ["sci.space", "rec.autos", None, None]
    assert m["topic_accuracy"] == pytest.approx(2 / 4)  # exact label after whitespace/case normalisation
    assert m["topic_accuracy_snapped"] == pytest.approx(4 / 4)
    assert m["topic_invalid"] == 2
    row = report.headline_row("m", {"news:topic": m}, {})
    assert row["news acc"] == pytest.approx(0.5) and row["news acc (snapped)"] == pytest.approx(1.0)
    assert list(row).index("news acc") < list(row).index("news acc (snapped)")
    intent = report.headline_row(
        "m", {"snips:intent_slots": {"intent_accuracy": 0.1, "intent_accuracy_snapped": 0.9}}, {}
    )
    assert intent["snips intent acc"] == 0.1 and intent["snips intent acc (snapped)"] == 0.9


def test_score_macro_f1_over_train_labels_and_unseen_gold():
    """Issue 12 item 15: macro-F1 averages over the train label set (+ test-only golds, which score 0)."""
    rows = [{"text": "t", "label": "a"}, {"text": "t", "label": "a"}, {"text": "t", "label": "z"}]
    m, _ = mt.score_task("topic", rows, ["topic: a", "topic: b", "topic: z"], ["a", "b", "c"])
    # Classes a, b, c (train) + z (test only; "z" is not a label, so the answer is invalid).
    # a: tp 1, fn 1 -> 2/3; b: fp 1 -> 0; c: nothing -> 0; z: fn 1 -> 0.
    assert m["macro_f1"] == pytest.approx((2 / 3) / 4)
    assert m["topic_invalid"] == 1


# ---------------------------------------------------------------------------------------------------- mixture


def test_mixture_probabilities():
    sizes = {"a": 300, "b": 100}
    assert mix.mixture_probabilities(sizes) == {"a": 0.5, "b": 0.5}
    assert mix.mixture_probabilities(sizes, {"a": 3, "b": 1}) == {"a": 0.75, "b": 0.25}
    assert mix.mixture_probabilities(sizes, strategy="proportional") == {"a": 0.75, "b": 0.25}
    p = mix.mixture_probabilities(sizes, strategy="temperature", temperature=2.0)
    assert p["a"] == pytest.approx(300**0.5 / (300**0.5 + 100**0.5))
    for bad in ({"strategy": "nope"}, {"strategy": "temperature", "temperature": 0}, {"weights": {"c": 1}}):
        with pytest.raises(ValueError):
            mix.mixture_probabilities(sizes, **bad)
    with pytest.raises(ValueError, match="no mass"):
        mix.mixture_probabilities(sizes, {"a": 0, "b": 0})


def test_sample_mixture_proportions_and_seed():
    datasets = pytest.importorskip("datasets")
    a = datasets.Dataset.from_dict({"prompt": [f"a{i}" for i in range(50)], "completion": ["x"] * 50})
    b = datasets.Dataset.from_dict({"prompt": [f"b{i}" for i in range(10)], "completion": ["y"] * 10})
    mixed = mix.sample_mixture({"a": a, "b": b}, {"a": 0.75, "b": 0.25}, 4000, seed=1)
    share = mixed["task"].count("a") / len(mixed)
    assert len(mixed) == 4000 and abs(share - 0.75) < 0.03
    # b has 10 rows but is drawn ~1000 times: it cycles through full permutations, so counts stay balanced.
    counts = {p: mixed["prompt"].count(p) for p in b["prompt"]}
    assert max(counts.values()) - min(counts.values()) <= 1
    again = mix.sample_mixture({"a": a, "b": b}, {"a": 0.75, "b": 0.25}, 4000, seed=1)
    other = mix.sample_mixture({"a": a, "b": b}, {"a": 0.75, "b": 0.25}, 4000, seed=2)
    assert again["prompt"] == mixed["prompt"] and other["prompt"] != mixed["prompt"]
    with pytest.raises(ValueError, match="different tasks"):
        mix.sample_mixture({"a": a}, {"a": 0.5, "b": 0.5}, 10)


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
    """Issue 12 item 15: an intent / topic that only the test file shows never enters the label set."""
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
    """Issue 12 item 7: official dev/test files are used, --test_path/--dev_path replace them, carving is a fallback."""
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


def test_truncate_texts(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    long = "the dog runs home quickly " * 20
    short = data.truncate_texts([long, "hi"], tok, 8)
    assert len(tok(short[0], add_special_tokens=False)["input_ids"]) <= 9 and short[1] == "hi"
    assert data.truncate_texts([long], tok, 0) == [long]
