"""map_sharded: every rank gets an equal share, the gather restores order, nothing is duplicated or dropped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from toolkit.distributed import is_main_process, map_sharded, num_processes

WORKER = textwrap.dedent(
    """
    import json, sys
    from accelerate import PartialState
    from toolkit.distributed import map_sharded

    state = PartialState(cpu=True)
    seen = []

    def double(rows):
        seen.append(list(rows))
        return [row * 2 for row in rows]

    out = map_sharded(double, list(range(int(sys.argv[1]))))
    record = {"rank": state.process_index, "type": str(state.distributed_type), "out": out, "seen": seen}
    with open(f"{sys.argv[2]}/rank{state.process_index}.json", "w") as f:
        json.dump(record, f)
    state.wait_for_everyone()
    state.destroy_process_group()  # a rank exiting while gloo still tears down its peer aborts (SIGABRT)
    """
)


def test_single_process_is_a_plain_call():
    assert num_processes() == 1 and is_main_process()
    assert map_sharded(lambda rows: [r + 1 for r in rows], [3, 1, 2]) == [4, 2, 3]
    assert map_sharded(lambda rows: rows, []) == []


def test_a_function_that_drops_outputs_is_an_error():
    with pytest.raises(ValueError, match="2 outputs for 3 rows"):
        map_sharded(lambda rows: rows[:2], [1, 2, 3])


@pytest.mark.parametrize("n_rows", [5, 6])
def test_two_processes_shard_equally_and_gather_in_order(tmp_path, n_rows):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd = [*launcher, str(script), str(n_rows), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(r["rank"] for r in results) == [0, 1]
    for result in results:
        assert "MULTI_CPU" in result["type"]
        assert result["out"] == [2 * i for i in range(n_rows)]
        assert len(result["seen"]) == 1 and len(result["seen"][0]) == (n_rows + 1) // 2  # equal shares (padded)
    shares = {r["rank"]: r["seen"][0] for r in results}
    assert shares[0] == list(range((n_rows + 1) // 2))  # contiguous shares, rank 0 first
