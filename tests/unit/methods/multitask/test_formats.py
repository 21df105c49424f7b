"""toolkit.methods.multitask.formats: answer formats, slots <-> BIO on real data, strict vs snapped scoring, sharded
generation."""

from __future__ import annotations

import pytest

from toolkit.evaluation.label_scoring import snap_label
from toolkit.evaluation.metrics import bio_spans
from toolkit.methods.multitask import formats, report
from toolkit.tasks.intent_slot import load_slurp, load_snips

# ------------------------------------------------------------------------------------------------ slots <-> BIO


def test_bio_to_slots_and_back_simple():
    tokens = "play the beatles on spotify".split()
    tags = ["O", "B-artist", "I-artist", "O", "B-service"]
    slots = formats.bio_to_slots(tokens, tags)
    assert slots == [("artist", "the beatles"), ("service", "spotify")]
    assert formats.format_slots(slots) == "artist=the beatles; service=spotify"
    back, stats = formats.slots_to_bio(tokens, formats.parse_slots(formats.format_slots(slots))[0])
    assert back == tags and stats == {"placed": 2, "not_found": 0}


def test_slots_to_bio_repeated_values_and_slots():
    # "the" occurs twice; the slot is the second one: the cursor after the previous match must find it.
    tokens = "add the song to the playlist".split()
    back, _ = formats.slots_to_bio(tokens, [("music_item", "song"), ("playlist_owner", "the")])
    assert back == ["O", "O", "B-music_item", "O", "B-playlist_owner", "O"]
    # The same slot with the same value twice takes two different occurrences, never the same words twice.
    tokens = "from paris to paris".split()
    back, stats = formats.slots_to_bio(tokens, [("city", "paris"), ("city", "paris"), ("city", "paris")])
    assert back == ["O", "B-city", "O", "B-city"]
    assert stats == {"placed": 2, "not_found": 1}  # the third copy has nowhere to go: counted
    # Out-of-order emission still lands (fallback search from the start); case-insensitive.
    back, stats = formats.slots_to_bio("Book A table in Paris".split(), [("city", "paris"), ("party", "a")])
    assert back == ["O", "B-party", "O", "O", "B-city"] and stats["not_found"] == 0


def test_slots_not_in_tokens_are_counted():
    tags, stats = formats.slots_to_bio("play jazz".split(), [("genre", "jazz"), ("artist", "miles davis"), ("x", "")])
    assert tags == ["O", "B-genre"]
    assert stats == {"placed": 1, "not_found": 2}


def test_parse_slots_malformed_and_none():
    assert formats.parse_slots("none") == ([], 0)
    assert formats.parse_slots("") == ([], 0)
    slots, bad = formats.parse_slots("a=x y; garbage; =v; b= ; c=z=w")
    assert slots == [("a", "x y"), ("c", "z=w")] and bad == 3


def test_bio_to_slots_errors():
    with pytest.raises(ValueError, match="2 tokens but 1 tags"):
        formats.bio_to_slots(["a", "b"], ["O"])


def _roundtrip_failures(rows):
    failures = 0
    for row in rows:
        text = formats.format_slots(formats.bio_to_slots(row["tokens"], row["slot_tags"]))
        tags, stats = formats.slots_to_bio(row["tokens"], formats.parse_slots(text)[0])
        # Gold tags re-read with conlleval semantics (a stray I- opens a span) are what the text encodes.
        failures += tags != _normalised(row["slot_tags"]) or stats["not_found"] > 0
    return failures


def _normalised(tags):
    out = ["O"] * len(tags)
    for typ, s, e in bio_spans(tags):
        out[s] = f"B-{typ}"
        out[s + 1 : e] = [f"I-{typ}"] * (e - s - 1)
    return out


def test_slot_roundtrip_on_real_snips(data_root):
    rows = list(load_snips("test", data_dir=data_root)) + list(load_snips("valid", data_dir=data_root))
    assert len(rows) == 1400
    failures = _roundtrip_failures(rows)
    # Ambiguity is possible in principle (a value whose words also occur earlier, untagged); on SNIPS it is rare.
    assert failures <= 0.01 * len(rows), f"{failures} / {len(rows)} SNIPS rows do not round-trip"


def test_slot_roundtrip_on_real_slurp(data_root):
    rows = list(load_slurp("devel", data_dir=data_root))
    assert _roundtrip_failures(rows) <= 0.02 * len(rows)


# ---------------------------------------------------------------------------------------------- prompts / parse


def test_build_prompt_and_completion():
    row = {"tokens": "play jazz".split(), "slot_tags": ["O", "B-genre"], "intent": "PlayMusic"}
    prompt = formats.build_prompt("intent_slots", row, ["PlayMusic", "GetWeather"])
    assert "Utterance: play jazz" in prompt and "Intents: PlayMusic, GetWeather" in prompt
    assert "Intents:" not in formats.build_prompt("intent", row, [f"i{k}" for k in range(71)])  # too many to list
    assert formats.build_completion("intent_slots", row) == "intent: PlayMusic | slots: genre=jazz"
    assert formats.build_completion("slots", {"tokens": ["hi"], "slot_tags": ["O"]}) == "slots: none"
    assert formats.build_completion("topic", {"text": "x", "label": 1}, ["a", "b"]) == "topic: b"
    with pytest.raises(ValueError, match="unknown task type"):
        formats.build_prompt("ner", row)


def test_parse_answer():
    assert formats.parse_answer("intent: PlayMusic | slots: a=b\nintent: junk") == {
        "intent": "PlayMusic",
        "slots": "a=b",
    }
    assert formats.parse_answer("no key here") == {}
    assert formats.parse_answer("Topic: sci.space") == {"topic": "sci.space"}


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
    m, preds = formats.score_task("intent_slots", rows, outputs, ["GetWeather", "PlayMusic"])
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
        formats.score_task("intent", rows, outputs)
    with pytest.raises(ValueError, match="3 gold rows but 1 outputs"):
        formats.score_task("slots", rows, outputs[:1])


def test_score_topic_macro_f1_and_two_model_em():
    rows = [{"text": "t", "label": "a"}, {"text": "t", "label": "b"}]
    m, _ = formats.score_task("topic", rows, ["topic: a", "topic: a"], ["a", "b"])
    assert m["topic_accuracy"] == 0.5 and m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    intent = [{"label": "x", "gold": "x"}, {"label": "y", "gold": "x"}]
    slots = [{"tags": ["O"], "gold_tags": ["O"]}, {"tags": ["O"], "gold_tags": ["O"]}]
    assert formats.two_model_exact_match(intent, slots) == 0.5
    with pytest.raises(ValueError):
        formats.two_model_exact_match(intent, slots[:1])


def test_headline_accuracy_is_strict_snapped_is_a_labelled_column():
    """Out-of-set answers snapped to the closest label must not lift the headline accuracy."""
    rows = [{"text": "t", "label": lab} for lab in ("sci.space", "rec.autos", "rec.autos", "sci.space")]
    outputs = ["topic: sci.space", "topic:  REC.AUTOS ", "topic: rec autos", "topic: space"]
    m, preds = formats.score_task("topic", rows, outputs, ["rec.autos", "sci.space"])
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
    """Macro-F1 averages over the train label set (+ test-only golds, which score 0)."""
    rows = [{"text": "t", "label": "a"}, {"text": "t", "label": "a"}, {"text": "t", "label": "z"}]
    m, _ = formats.score_task("topic", rows, ["topic: a", "topic: b", "topic: z"], ["a", "b", "c"])
    # Classes a, b, c (train) + z (test only; "z" is not a label, so the answer is invalid).
    # a: tp 1, fn 1 -> 2/3; b: fp 1 -> 0; c: nothing -> 0; z: fn 1 -> 0.
    assert m["macro_f1"] == pytest.approx((2 / 3) / 4)
    assert m["topic_invalid"] == 1


def test_label_sets_are_listed_up_to_max_listed():
    row = {"tokens": "play jazz".split(), "slot_tags": ["O", "B-genre"], "intent": "PlayMusic"}
    labels = ["PlayMusic", "GetWeather", "BookRestaurant"]
    assert "Intents:" in formats.build_prompt("intent", row, labels, max_listed=3)
    assert "Intents:" not in formats.build_prompt("intent", row, labels, max_listed=2)


def test_sharded_answers_on_one_process_keeps_prompt_order_and_sums_stats(monkeypatch):
    calls = []

    def fake_generate(model, tokenizer, prompts, **generation):
        calls.append((list(prompts), generation))
        stats = {"seconds": 1.0, "prompt_tokens": 2 * len(prompts), "generated_tokens": 3 * len(prompts)}
        return [f"answer {p}" for p in prompts], stats | {"tokens_per_second": 3.0}

    monkeypatch.setattr(formats, "generate_answers", fake_generate)
    texts, stats = formats.sharded_answers(None, None, ["a", "b", "c"], max_new_tokens=4, task="topic")
    assert texts == ["answer a", "answer b", "answer c"]
    assert calls == [(["a", "b", "c"], {"max_new_tokens": 4, "task": "topic"})]
    assert stats["prompt_tokens"] == 6 and stats["generated_tokens"] == 9
    assert stats["tokens_per_second"] == pytest.approx(9 / stats["seconds"])


def test_evaluate_tags_each_prediction_with_its_test_row_id(monkeypatch):
    """Prediction rows name their test item, so any two models' rows on one task pair up by id."""
    from datasets import Dataset

    from toolkit.methods.multitask.data import TaskSplits

    def fake_answers(model, tokenizer, prompts, **generation):
        return ["intent: PlayMusic"] * len(prompts), {"seconds": 1.0, "tokens_per_second": 1.0}

    monkeypatch.setattr(formats, "sharded_answers", fake_answers)
    rows = {"tokens": [["play", "jazz"]] * 2, "slot_tags": [["O", "B-genre"]] * 2, "intent": ["PlayMusic", "Other"]}
    test = Dataset.from_dict(rows | {"id": ["snips-test-7", "snips-test-3"]})
    splits = [TaskSplits("snips:intent", "snips", "intent", test, test, ["Other", "PlayMusic"])]
    _, predictions = formats.evaluate("multitask", None, None, splits, max_new_tokens=4, batch_size=2)
    assert [(row["model"], row["task"], row["id"]) for row in predictions] == [
        ("multitask", "snips:intent", "snips-test-7"),
        ("multitask", "snips:intent", "snips-test-3"),
    ]
    assert [row["label"] == row["gold"] for row in predictions] == [True, False]
    assert formats.scored_ids([{"text": "no id"}] * 2) == ["row0", "row1"]
