"""The generation benchmark runs end to end on a small load and prints every variant's row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_api_part_prints_all_variants_and_the_cached_rerun():
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/generation_throughput.py",
            "--skip_hf",
            "--n_prompts",
            "96",
            "--concurrency",
            "16",
            "--latencies",
            "0.01",
            "--repeats",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    for label in (
        "plain AsyncOpenAI + semaphore (SDK default httpx)",
        "toolkit teacher+cache+engine (default, aiohttp)",
        "toolkit teacher+cache+engine, http_transport=httpx",
        "reference: bare aiohttp",
        "fully cached (0 requests)",
        "Where the toolkit's client CPU goes",
        "request build (toolkit body + SDK options",
        "cache hand-off",
        "engine bookkeeping",
        "JSON parse",
    ):
        assert label in out, out
    # Each measured run asserts the server saw exactly one request per prompt; a rate of 0 would mean no work.
    toolkit_row = next(line for line in out.splitlines() if "(default, aiohttp)" in line)
    assert float(toolkit_row.split("|")[3]) > 0
