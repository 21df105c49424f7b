"""Few-shot templates: text/chat rendering, demo selection, template hash, output cleaning."""

from __future__ import annotations

import pytest

from toolkit.generation.prompts import FewShotTemplate, select_demos, template_hash

DEMOS = [{"source": "she go", "target": "she goes"}, {"source": "he run", "target": "he runs"}]


def test_text_prompt_layout_and_default_stop():
    t = FewShotTemplate(
        instruction="Fix it.", input_template="Sentence: {source}", output_template="Corrected: {target}"
    )
    prompt = t.render_text(DEMOS, {"source": "they was"})
    assert prompt == (
        "Fix it.\n\nSentence: she go\nCorrected: she goes\n\nSentence: he run\nCorrected: he runs\n\n"
        "Sentence: they was\nCorrected:"
    )
    assert t.default_stop() == ["\n\nSentence:"]
    assert t.build(DEMOS, {"source": "x"}) == {"prompt": t.render_text(DEMOS, {"source": "x"})}


def test_chat_messages_alternate_demo_turns():
    t = FewShotTemplate(
        instruction="Fix it.", input_template="{source}", output_template="{target}", prompt_format="chat"
    )
    msgs = t.build(DEMOS, {"source": "they was"})["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[2]["content"] == "she goes" and msgs[-1]["content"] == "they was"


def test_missing_column_error_names_it():
    t = FewShotTemplate(input_template="{sentence}")
    with pytest.raises(ValueError, match="sentence.*source"):
        t.render_text([], {"source": "x"})


def test_list_indexing_in_templates():
    t = FewShotTemplate(input_template="{source}", output_template="{references[0]}")
    assert t.render_demo({"source": "a", "references": ["b", "c"]}) == ("a", "b")


def test_clean_output_strips_whitespace_and_prefix():
    t = FewShotTemplate(input_template="{source}", output_template="Corrected: {target}")
    assert t.clean_output("  she goes .\n\n") == "she goes ."
    assert t.clean_output("Corrected: she goes .\nSentence: next", first_line=True) == "she goes ."


def test_select_demos_fixed_random_indices():
    pool = [{"i": i} for i in range(10)]
    assert [d["i"] for d in select_demos(pool, 3)] == [0, 1, 2]
    r1 = select_demos(pool, 3, method="random", seed=1)
    assert r1 == select_demos(pool, 3, method="random", seed=1)
    assert r1 != select_demos(pool, 3, method="random", seed=2)
    assert [d["i"] for d in select_demos(pool, 2, indices=[7, 3])] == [7, 3]
    with pytest.raises(ValueError, match="only 10 rows"):
        select_demos(pool, 11)
    with pytest.raises(ValueError, match="out of range"):
        select_demos(pool, 1, indices=[10])


def test_template_hash_tracks_template_and_demos():
    t = FewShotTemplate(input_template="{source}", output_template="{target}")
    h = template_hash(t, DEMOS)
    assert h == template_hash(t, DEMOS) and len(h) == 16
    assert h != template_hash(t, DEMOS[:1])
    assert h != template_hash(FewShotTemplate(input_template="S: {source}", output_template="{target}"), DEMOS)
