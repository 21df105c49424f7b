"""Teacher outputs beyond the text: reasoning traces, extra_body, structured outputs, top-k logprobs."""

from __future__ import annotations

import json
import urllib.request

import pytest
from pydantic import BaseModel

from toolkit.generation.cache import GenerationCache, request_fingerprint
from toolkit.generation.engine import run_generation
from toolkit.generation.items import WorkItem
from toolkit.teachers.base import GenerationRequest
from toolkit.teachers.config import TeacherConfig
from toolkit.teachers.openai import OpenAITeacher
from toolkit.teachers.openai_request import request_body
from toolkit.testing.openai_server import reasoning_trace


class Answer(BaseModel):
    answer: str
    confidence: float


def _teacher(server, model="fake"):
    return OpenAITeacher(TeacherConfig(backend="openai", model=model, base_url=server.base_url, api_key="k"))


def _chat(text="What is 2 + 2?", **options):
    return GenerationRequest(messages=[{"role": "user", "content": text}], temperature=0, **options)


def _run(server, requests, cache, model="fake"):
    items = [WorkItem(f"i{k}", [request]) for k, request in enumerate(requests)]
    outcomes, summary = run_generation(items, _teacher(server, model), cache, progress=False)
    return [outcome.generations[0][0] for outcome in outcomes], summary


def test_reasoning_content_is_kept_and_cached(fake_openai, tmp_path):
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        first, _ = _run(fake_openai, [_chat()], cache, model="fake-reasoner")
        again, summary = _run(fake_openai, [_chat()], cache, model="fake-reasoner")
    assert first[0].reasoning_content == reasoning_trace("user: What is 2 + 2?", 0, "greedy")
    assert summary.new_samples == 0 and again[0].reasoning_content == first[0].reasoning_content
    assert first[0].text and first[0].text != first[0].reasoning_content


def test_a_plain_model_has_no_reasoning_content(fake_openai):
    generation = _teacher(fake_openai).generate([_chat()])[0][0]
    assert generation.reasoning_content is None


def test_extra_body_reaches_the_server_and_keys_the_cache(fake_openai, tmp_path):
    extra = {"top_k": 5, "chat_template_kwargs": {"enable_thinking": False}}
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        _run(fake_openai, [_chat()], cache)
        _, summary = _run(fake_openai, [_chat(extra_body=extra)], cache)
    assert summary.new_samples == 1, "another extra_body is another request, not a cache hit"
    body = fake_openai.requests[-1].body
    assert body["top_k"] == 5 and body["chat_template_kwargs"] == {"enable_thinking": False}


def test_response_format_from_a_pydantic_model(fake_openai, tmp_path):
    request = _chat(response_format=Answer)
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        _run(fake_openai, [_chat()], cache)
        generations, summary = _run(fake_openai, [request], cache)
    assert summary.new_samples == 1
    sent = fake_openai.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == Answer.model_json_schema()
    assert Answer.model_validate_json(generations[0].text).confidence == 7.5


def test_response_format_from_a_json_schema_dict():
    schema = {"title": "Label", "type": "object", "properties": {"label": {"type": "string"}}}
    body = request_body("m", _chat(response_format=schema), 1, None)
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "Label", "schema": schema}}
    passthrough = {"type": "json_object"}
    assert request_body("m", _chat(response_format=passthrough), 1, None)["response_format"] == passthrough


def test_unset_options_leave_the_cache_key_unchanged():
    fingerprint = json.loads(request_fingerprint("t", _chat()))
    assert set(fingerprint["sampling"]) == {"temperature", "top_p", "max_tokens", "stop", "seed", "logprobs"}


@pytest.mark.parametrize("chat", [True, False])
def test_top_logprobs_are_stored_when_asked(fake_openai, tmp_path, chat):
    request = _chat(top_logprobs=3) if chat else GenerationRequest(prompt="2 + 2 =", temperature=0, top_logprobs=3)
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        generations, _ = _run(fake_openai, [request], cache)
        cached = cache.get(_teacher(fake_openai).id, request, 0)
    generation = generations[0]
    assert len(generation.logprobs) == len(generation.text.split()) == len(generation.top_logprobs)
    assert all(len(step) == 3 for step in generation.top_logprobs)
    assert all(max(step.values()) == value for step, value in zip(generation.top_logprobs, generation.logprobs))
    assert cached.top_logprobs == generation.top_logprobs


def test_top_logprobs_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="top_logprobs"):
        _chat(top_logprobs=21)


def test_fake_server_echoes_extra_fields_and_the_response_format(fake_openai):
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "min_p": 0.1}
    body["response_format"] = {"type": "json_object"}
    request = urllib.request.Request(
        f"{fake_openai.base_url}/chat/completions", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["echo"] == {"extra_body": {"min_p": 0.1}, "response_format": {"type": "json_object"}}
