"""Job configuration: the ``--shard i/n`` shorthand."""

from __future__ import annotations

import pytest

from toolkit.generation.jobs import JobConfig, shard


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
