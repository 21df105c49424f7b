"""The fake OpenAI server in a child process (its own interpreter and event loop), for benchmarks.

``python -m toolkit.testing.openai_server`` prints ``PORT <n>`` once it listens; :func:`start_server_process`
starts it and returns a :class:`RemoteFakeServer` handle.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter

__all__ = ["RemoteFakeServer", "start_server_process"]


class RemoteFakeServer:
    """Handle on a fake server running in its own process (see :func:`start_server_process`)."""

    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc = proc
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _admin(self, name: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_admin/{name}", timeout=10) as resp:
            return json.loads(resp.read())

    def request_count(self) -> int:
        """Completion requests received (answered or not)."""
        return int(self._admin("stats")["requests"])

    def answered_count(self) -> int:
        """Answers fully written back to clients."""
        return int(self._admin("stats")["answered"])

    def prompt_log(self) -> tuple[Counter, Counter]:
        """``(asked, answered)``: requests received and answers written back, per prompt."""
        log = self._admin("prompts")
        return Counter(log["asked"]), Counter(log["answered"])

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()


def start_server_process(
    *, latency: float = 0.0, ignore_n: bool = False, nice: int = 0, answer_limit: int | None = None
) -> RemoteFakeServer:
    """Run the fake server in a child process (its own interpreter and event loop).

    ``answer_limit`` answers only the first N requests and holds the rest (see the server's docstring).

    ``nice`` > 0 lowers the server's CPU priority, so that on a box with few cores the client being measured
    gets the CPU first (the server stands in for a remote machine).
    """
    cmd = [sys.executable, "-m", "toolkit.testing.openai_server", "--latency", str(latency)]
    if ignore_n:
        cmd.append("--ignore_n")
    if answer_limit is not None:
        cmd += ["--answer_limit", str(answer_limit)]
    preexec = (lambda: os.nice(nice)) if nice else None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=preexec)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fake server process failed to start: {line!r}")
    return RemoteFakeServer(proc, int(line.split()[1]))
