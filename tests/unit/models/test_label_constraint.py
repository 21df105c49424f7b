"""Constrained label decoding: a random tiny LM can only answer with training labels."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from toolkit.methods.multitask import formats
from toolkit.models.label_constraint import LabelTrie, label_paths

LABELS = ["alarm_query", "alarm_set", "play_music", "weather_query", "comp.sys.ibm.pc.hardware"]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir), AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_trie_follows_paths_then_frees():
    trie = LabelTrie([[1, 2, 3], [1, 4]], vocab_size=10)
    assert sorted(trie.allowed([])) == [1]
    assert sorted(trie.allowed([1])) == [2, 4]
    assert trie.allowed([1, 4]) == list(range(10))  # path complete: free decoding
    with pytest.raises(ValueError):
        LabelTrie([], vocab_size=10)


@pytest.mark.parametrize("task", ["topic", "intent", "intent_slots"])
def test_random_model_answers_only_with_labels(tiny, task):
    model, tok = tiny
    rows = [{"text": f"utterance {i}", "tokens": ["utterance", str(i)], "slot_tags": ["O", "O"]} for i in range(6)]
    prompts = [formats.build_prompt(task, r) for r in rows]
    free, _ = formats.generate_answers(model, tok, prompts, max_new_tokens=24, batch_size=3)
    constrained, _ = formats.generate_answers(
        model, tok, prompts, max_new_tokens=24, batch_size=3, task=task, labels=LABELS
    )
    field = "topic" if task == "topic" else "intent"
    answers = [formats.parse_answer(t).get(field) for t in constrained]
    assert all(a in LABELS for a in answers), constrained
    assert not all(
        formats.parse_answer(t).get(field) in LABELS for t in free
    )  # the constraint is what made them valid
    if task == "intent_slots":
        assert all("slots" in formats.parse_answer(t) for t in constrained)


def test_paths_end_with_eos_for_single_field_tasks(tiny):
    _, tok = tiny
    paths = label_paths(tok, "topic", ["a", "b"], eos_ids=[7])
    assert all(p[-1] == 7 for p in paths)
    assert tok.decode(paths[0][:-1]) == "topic: a"
