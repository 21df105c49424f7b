"""Answer journal: submitted answers survive a writer that never commits; committed segments are removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from toolkit.generation.cache import GenerationCache
from toolkit.generation.cache_journal import AnswerJournal, journal_dir
from toolkit.teachers.base import Generation, GenerationRequest

REPO = Path(__file__).resolve().parents[3]


def _request(k: int) -> GenerationRequest:
    return GenerationRequest(prompt=f"journal p{k}", seed=0)


_SUBMIT_AND_DIE = """
import os, signal, sys
import os
import signal
import subprocess
import sys
from pathlib import Path

from toolkit.generation.cache import GenerationCache
from toolkit.teachers.base import Generation, GenerationRequest

cache = GenerationCache(sys.argv[1], max_batch=64, max_delay=60.0)
for k in range(5):
    request = GenerationRequest(prompt=f"journal p{k}", seed=0)
    cache.submit("t", request, 0, [Generation(f"answer {k}", reasoning_content=f"trace {k}")])
assert cache._writer.commits == 0
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_answers_submitted_but_never_committed_survive_a_kill(tmp_path):
    path = tmp_path / "c.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _SUBMIT_AND_DIE, str(path)], cwd=REPO, env=env, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with GenerationCache(path) as reopened:
        got = [reopened.get("t", _request(k), 0) for k in range(5)]
    assert [g.text for g in got] == [f"answer {k}" for k in range(5)]
    assert got[3].reasoning_content == "trace 3"
    assert not list(journal_dir(str(path)).glob("*.jsonl")), "a replayed segment must be deleted"


def test_a_live_writers_segment_is_left_alone(tmp_path):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path, max_delay=60.0) as cache:
        cache.submit("t", _request(0), 0, [Generation("live")])
        with GenerationCache(path, read_only=False) as other:
            assert list(journal_dir(str(path)).glob("*.jsonl")), "the live segment is still there"
            assert other.get("t", _request(0), 0) is None  # not committed yet, and not stolen by the other opener
    with GenerationCache(path) as cache:
        assert cache.get("t", _request(0), 0).text == "live"
    assert not list(journal_dir(str(path)).glob("*.jsonl")), "a clean close leaves no journal"


def test_rotated_segments_are_deleted_once_committed(tmp_path):
    journal = AnswerJournal(str(tmp_path / "c.sqlite"), segment_size=2)
    for k in range(5):
        journal.append([("key", k)])
    assert len(list(journal.folder.glob("*.jsonl"))) == 3
    journal.committed(3)  # the first segment (answers 1-2) is fully committed, the second (3-4) is not
    assert len(list(journal.folder.glob("*.jsonl"))) == 2
    journal.close()
    assert not list(journal.folder.glob("*.jsonl"))
