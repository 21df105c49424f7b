"""toolkit.meter: one meter for wall time, CPU time, peak memory and tokens; costs add up."""

import mmap
import time

import pytest

from toolkit.meter import Cost, Meter, process_cost


def test_meter_measures_a_block_and_its_tokens():
    with Meter(tokens=100) as meter:
        time.sleep(0.05)
    assert meter.wall_s >= 0.05
    assert meter.cpu_s <= meter.wall_s + 0.05  # sleeping costs (almost) no CPU
    assert meter.peak_rss_mb >= 1.0  # a Python process holds at least a few MB
    assert meter.cost.tokens_per_s == pytest.approx(100 / meter.wall_s)


def test_meter_sees_memory_allocated_inside_the_block():
    with Meter(interval=0.01) as before:
        pass
    with Meter(interval=0.01) as during:
        # Fresh anonymous pages: a bytearray may reuse heap pages an earlier test left resident, so RSS would not rise.
        block = mmap.mmap(-1, 64 * 2**20)
        for offset in range(0, len(block), 4096):
            block[offset] = 1  # touch every page so it is resident
        time.sleep(0.3)  # several samples, even on a busy machine
        block.close()
    assert during.peak_rss_mb >= before.peak_rss_mb + 48


def test_costs_add_up_and_give_an_energy_estimate():
    total = Cost(10.0, 36.0, 100.0, 5) + Cost(1.0, 0.0, 300.0)
    assert total == Cost(11.0, 36.0, 300.0, 5)
    assert total.energy_wh(10.0) == pytest.approx(0.1)
    record = total.as_dict(watts_per_core=10.0)
    assert record["energy_wh"] == pytest.approx(0.1) and record["tokens_per_s"] == pytest.approx(5 / 11)
    assert "tokens" not in Cost(1.0, 1.0).as_dict() and "peak_rss_mb" not in Cost(1.0, 1.0).as_dict()


def test_process_cost_covers_at_least_the_work_done_so_far():
    with Meter() as meter:
        sum(i * i for i in range(100_000))
    cost = process_cost()
    assert cost.cpu_s >= meter.cpu_s and cost.wall_s >= meter.wall_s
