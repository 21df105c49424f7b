"""A new machine for round-trip tests: a fresh interpreter, an empty HF cache, the fake Hub as the only Hub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def fresh_process_env(hub_url: str, hf_home: Path, *, keep_toolkit: bool = False) -> dict[str, str]:
    """The environment of a new machine: empty HF cache, online, the fake Hub as the only endpoint, no token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE", "TRANSFORMERS_"))}
    if not keep_toolkit:
        env.pop("PYTHONPATH", None)  # a card's snippet needs no toolkit code
    env.update(
        HF_HOME=str(hf_home),
        HF_ENDPOINT=hub_url,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_DATASETS_OFFLINE="0",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
    )
    return env


def run_fresh(code: str, hub_url: str, tmp_path: Path, *, keep_toolkit: bool = False) -> str:
    """Run ``code`` in a fresh interpreter (see :func:`fresh_process_env`); returns its stdout.

    ``keep_toolkit`` keeps ``PYTHONPATH`` (this checkout's ``toolkit`` importable) for code that decodes as a
    recipe does; the model still comes from the Hub only.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    hf_home = tmp_path / "fresh_hf_home"
    assert not hf_home.exists()
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=fresh_process_env(hub_url, hf_home, keep_toolkit=keep_toolkit),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout
