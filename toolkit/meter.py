"""What a piece of work cost: wall seconds, process CPU seconds, and an energy estimate from the CPU time."""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["DEFAULT_WATTS_PER_CORE", "Cost", "CostMeter"]

# Rough power draw of one fully busy CPU core, used to turn CPU-seconds into an energy estimate. Server parts
# sit around 4-8 W per core at TDP (e.g. 250 W / 64 cores), desktop parts 10-15 W (125 W / 8 cores); 10 W is a
# middle-of-the-road figure. It is an estimate, not a measurement: override it for your hardware.
DEFAULT_WATTS_PER_CORE = 10.0


@dataclass
class Cost:
    """Wall seconds and process CPU seconds (all threads) of a piece of work."""

    wall_s: float = 0.0
    cpu_s: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.wall_s + other.wall_s, self.cpu_s + other.cpu_s)

    def energy_wh(self, watts_per_core: float = DEFAULT_WATTS_PER_CORE) -> float:
        """Energy estimate: CPU-seconds × watts per busy core, in watt-hours (CPU only; GPUs not counted)."""
        return self.cpu_s * watts_per_core / 3600.0


class CostMeter:
    """``with CostMeter() as m: ...`` then ``m.cost``: wall time and ``time.process_time`` CPU time."""

    def __enter__(self) -> CostMeter:
        self._t, self._c = time.perf_counter(), time.process_time()
        self.cost = Cost()
        return self

    def __exit__(self, *exc) -> None:
        self.cost = Cost(time.perf_counter() - self._t, time.process_time() - self._c)
