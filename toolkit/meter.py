"""What a piece of work cost: wall seconds, process CPU seconds, peak memory, tokens and an energy estimate.

One meter for every measurement in the toolkit (training, feature extraction, inference, a whole run):

    with Meter() as meter:
        trainer.train()
    meter.tokens = tokens_seen  # optional: gives tokens_per_s
    record = meter.cost.as_dict()  # {"wall_s", "cpu_s", "peak_rss_mb", "energy_wh", "tokens", "tokens_per_s"}

CPU time is ``time.process_time`` (this process, all threads; on a GPU run it is the host side only). The peak
resident memory is sampled from ``/proc/self/statm`` while the block runs (the process-wide ``ru_maxrss`` would
carry an earlier model's peak into every later one); where ``/proc`` is missing it falls back to ``ru_maxrss``.
:func:`process_cost` is the cost of the whole process so far (what ``metrics.json``'s ``compute`` records).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass

__all__ = ["DEFAULT_WATTS_PER_CORE", "Cost", "Meter", "process_cost"]

# Rough power draw of one fully busy CPU core, used to turn CPU-seconds into an energy estimate. Server parts
# sit around 4-8 W per core at TDP (e.g. 250 W / 64 cores), desktop parts 10-15 W (125 W / 8 cores); 10 W is a
# middle-of-the-road figure. It is an estimate, not a measurement: override it for your hardware.
DEFAULT_WATTS_PER_CORE = 10.0

# Fallback start of this process where /proc is missing: the first import of the toolkit's meter.
_IMPORTED_AT = time.time()


@dataclass
class Cost:
    """What a piece of work cost.

    Attributes:
        wall_s: Wall-clock seconds.
        cpu_s: Process CPU seconds (all threads).
        peak_rss_mb: Peak resident memory in MB while it ran (``None`` = not measured).
        tokens: Tokens it processed (``None`` = not counted); gives :attr:`tokens_per_s`.
    """

    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float | None = None
    tokens: int | None = None

    def __add__(self, other: Cost) -> Cost:
        """Two pieces of work one after the other: times and tokens add up, the memory peak is the larger one."""
        peaks = [p for p in (self.peak_rss_mb, other.peak_rss_mb) if p is not None]
        counts = [t for t in (self.tokens, other.tokens) if t is not None]
        return Cost(
            self.wall_s + other.wall_s,
            self.cpu_s + other.cpu_s,
            max(peaks) if peaks else None,
            sum(counts) if counts else None,
        )

    @property
    def tokens_per_s(self) -> float | None:
        """Tokens per wall second, ``None`` when no tokens were counted or no time passed."""
        if self.tokens is None or self.wall_s <= 0:
            return None
        return self.tokens / self.wall_s

    def energy_wh(self, watts_per_core: float = DEFAULT_WATTS_PER_CORE) -> float:
        """Energy estimate: CPU-seconds × watts per busy core, in watt-hours (CPU only; GPUs not counted)."""
        return self.cpu_s * watts_per_core / 3600.0

    def as_dict(self, watts_per_core: float = DEFAULT_WATTS_PER_CORE) -> dict[str, float | int]:
        """The record form (``metrics.json``'s ``compute``): measured fields only, plus the energy estimate."""
        record: dict[str, float | int] = {"wall_s": self.wall_s, "cpu_s": self.cpu_s}
        if self.peak_rss_mb is not None:
            record["peak_rss_mb"] = self.peak_rss_mb
        record["energy_wh"] = self.energy_wh(watts_per_core)
        record["watts_per_core"] = watts_per_core
        if self.tokens is not None:
            record["tokens"] = self.tokens
        if self.tokens_per_s is not None:
            record["tokens_per_s"] = self.tokens_per_s
        return record


class Meter:
    """``with Meter() as meter: ...`` then ``meter.wall_s``, ``meter.cpu_s``, ``meter.peak_rss_mb``, ``meter.cost``.

    Set ``meter.tokens`` (before or after the block) to get ``tokens_per_s``.

    Args:
        interval: Seconds between two memory samples.
        tokens: Tokens the measured work processes, when known up front.
    """

    def __init__(self, interval: float = 0.05, tokens: int | None = None):
        self.interval = interval
        self.tokens = tokens
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.peak_rss_mb = rss_mb()

    def __enter__(self) -> Meter:
        self._wall_start = time.perf_counter()
        self._cpu_start = time.process_time()
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.peak_rss_mb = rss_mb()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss_mb = max(self.peak_rss_mb, rss_mb())

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._wall_start
        self.cpu_s = time.process_time() - self._cpu_start
        self._stop.set()
        self._sampler.join()
        self.peak_rss_mb = max(self.peak_rss_mb, rss_mb())

    @property
    def cost(self) -> Cost:
        """The measured block as a :class:`Cost`."""
        return Cost(self.wall_s, self.cpu_s, self.peak_rss_mb, self.tokens)

    @property
    def tokens_per_s(self) -> float | None:
        return self.cost.tokens_per_s


def rss_mb() -> float:
    """Resident set size of this process in MB (``/proc``), or its lifetime peak where ``/proc`` is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Lifetime peak resident memory of this process in MB (``ru_maxrss`` is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_wall_s() -> float:
    """Wall seconds since this process started (``/proc``), else since the toolkit's meter was first imported."""
    try:
        with open("/proc/self/stat") as stat:
            # Field 22 (start time in clock ticks since boot) comes after the ")" that closes the command name.
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            uptime_s = float(uptime.read().split()[0])
        return max(0.0, uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time() - _IMPORTED_AT


def process_cost(tokens: int | None = None) -> Cost:
    """The cost of this whole process so far: wall since start, CPU of all threads, lifetime peak memory.

    Args:
        tokens: Tokens the run processed (e.g. trained on), when the caller counted them.
    """
    return Cost(process_wall_s(), time.process_time(), peak_rss_mb(), tokens)
