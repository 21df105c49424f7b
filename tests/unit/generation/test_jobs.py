"""Job configuration: the ``--shard i/n`` shorthand, request options given as JSON on the command line."""

from __future__ import annotations

import pytest

from toolkit.generation.jobs import JobConfig, PromptConfig, shard


def test_shard_shorthand_sets_index_and_count():
    job = JobConfig(shard="2/4")
    assert (job.shard_index, job.num_shards) == (2, 4)


@pytest.mark.parametrize("spec", ["4/4", "2", "a/b", "-1/3"])
def test_bad_shard_is_rejected_with_its_value(spec):
    with pytest.raises(ValueError, match="shard"):
        JobConfig(shard=spec)


def test_shards_cover_every_row_once_in_order():
    rows = list(range(10))
    assert [row for index in range(3) for row in shard(rows, 3, index)] == rows


def test_request_options_from_json_and_dicts():
    prompt = PromptConfig(extra_body='{"top_k": 3}', response_format={"type": "json_object"}, top_logprobs=2)
    assert prompt.request_options() == {
        "extra_body": {"top_k": 3},
        "response_format": {"type": "json_object"},
        "top_logprobs": 2,
    }
    assert PromptConfig().request_options() == {}


@pytest.mark.parametrize("value", ["top_k=3", "[1, 2]"])
def test_malformed_extra_body_names_the_option(value):
    with pytest.raises(ValueError, match="extra_body"):
        PromptConfig(extra_body=value)
