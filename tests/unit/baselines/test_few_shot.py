"""toolkit.baselines.few_shot: label parsing, prompts and demonstrations."""

from __future__ import annotations

import pytest

from toolkit.baselines.few_shot import build_few_shot_messages, parse_label, pick_demos


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("positive", "positive"),
        (" Negative.", "negative"),
        ("The label is sci/tech", "Sci/Tech"),
        ("I think it's positive, not negative", "positive"),
        ("no idea", None),
        ("", None),
    ],
)
def test_parse_label(output, expected):
    assert parse_label(output, ["negative", "positive", "Sci/Tech"]) == expected


def test_few_shot_messages_and_demos():
    demos = pick_demos(["a", "b", "c", "d"], ["x", "y", "x", "y"], ["x", "y"], per_class=1, seed=0)
    assert sorted(label for _, label in demos) == ["x", "y"]
    msgs = build_few_shot_messages("query " * 200, demos, ["x", "y"], max_chars=50)
    assert msgs[0]["role"] == "system" and "x, y" in msgs[0]["content"]
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant", "user", "assistant", "user"]
    assert len(msgs[-1]["content"]) < 80
