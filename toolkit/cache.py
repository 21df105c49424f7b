"""Content-addressed generation cache in SQLite (WAL).

Key = sha256 of (teacher id, exact messages/prompt, sampling parameters, sample index). Each sample index is a
separate row, so asking for k=5 after k=4 pays only for the 5th sample, and two jobs that share a prompt share
its samples. Values are *raw* teacher outputs (text, finish reason, usage, optional logprobs): parsing happens
after the cache, so changing a parser never re-pays for calls.

Durability: WAL journal + one transaction per completed request. ``synchronous=NORMAL`` keeps commits
durable against a killed process (``kill -9``), which is the failure mode that matters for long jobs; only an
OS crash / power loss could drop the last few commits. Nothing secret is stored: the key inputs are the
teacher id (backend, model, host), the request content and sampling parameters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from toolkit.teachers.base import Generation, GenerationRequest, Usage

logger = logging.getLogger(__name__)

KEY_VERSION = 1  # bump when the key recipe changes so old rows are simply never hit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    teacher_id TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    logprobs TEXT,
    created_at REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    """``$TOOLKIT_CACHE/generations.sqlite`` (default ``~/.cache/distill-toolkit``)."""
    root = os.environ.get("TOOLKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "distill-toolkit")
    return Path(root) / "generations.sqlite"


def request_fingerprint(teacher_id: str, request: GenerationRequest) -> str:
    """Canonical JSON of everything that determines a request's output distribution (minus the sample index).

    ``n`` and ``sample_offset`` are deliberately excluded: a sample is identified by its index alone.
    """
    payload = {"v": KEY_VERSION, "teacher": teacher_id, **request.content(), "sampling": request.sampling()}
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def cache_key(teacher_id: str, request: GenerationRequest, sample_index: int) -> str:
    """sha256 hex digest identifying sample ``sample_index`` of ``request`` from ``teacher_id``."""
    fp = request_fingerprint(teacher_id, request)
    return hashlib.sha256(f"{fp}\x00{int(sample_index)}".encode()).hexdigest()


class GenerationCache:
    """SQLite-backed store of raw generations. Use as a context manager or call :meth:`close`.

    Args:
        path: Database file (parent dirs are created). ``":memory:"`` for a throwaway cache.
        read_only: Open without writing (``put`` raises).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, read_only: bool = False):
        self.path = str(path) if path is not None else str(default_cache_path())
        self.read_only = read_only
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the engine writes from the asyncio loop thread only, but tests and the HF
        # backend may hand the cache across threads; all access is serialised by the caller.
        self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)
        self.hits = 0
        self.misses = 0

    # -- reads ---------------------------------------------------------------------------------------------
    def get(self, teacher_id: str, request: GenerationRequest, sample_index: int) -> Generation | None:
        """The cached generation for one sample, or None."""
        return self.get_many(teacher_id, request, [sample_index])[0]

    def get_many(
        self, teacher_id: str, request: GenerationRequest, sample_indices: Sequence[int]
    ) -> list[Generation | None]:
        """Cached generations for ``sample_indices`` (None where missing), in the order asked."""
        keys = [cache_key(teacher_id, request, i) for i in sample_indices]
        found: dict[str, Generation] = {}
        for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT key, text, finish_reason, prompt_tokens, completion_tokens, logprobs "
                f"FROM generations WHERE key IN ({marks})",
                chunk,
            ).fetchall()
            for key, text, finish, p_tok, c_tok, logprobs in rows:
                found[key] = Generation(
                    text=text,
                    finish_reason=finish,
                    usage=Usage(int(p_tok), int(c_tok)),
                    logprobs=json.loads(logprobs) if logprobs else None,
                )
        out = [found.get(k) for k in keys]
        hits = sum(g is not None for g in out)
        self.hits += hits
        self.misses += len(out) - hits
        return out

    # -- writes --------------------------------------------------------------------------------------------
    def put_many(
        self, teacher_id: str, request: GenerationRequest, first_index: int, generations: Iterable[Generation]
    ) -> None:
        """Store ``generations`` as samples ``first_index, first_index+1, ...`` in ONE transaction."""
        if self.read_only:
            raise PermissionError(f"cache {self.path} was opened read-only")
        now = time.time()
        rows = [
            (
                cache_key(teacher_id, request, first_index + j),
                teacher_id,
                first_index + j,
                gen.text,
                gen.finish_reason,
                int(gen.usage.prompt_tokens),
                int(gen.usage.completion_tokens),
                json.dumps(gen.logprobs) if gen.logprobs is not None else None,
                now,
            )
            for j, gen in enumerate(generations)
        ]
        with self._conn:  # BEGIN ... COMMIT (atomic: all samples of a completed request or none)
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def put(self, teacher_id: str, request: GenerationRequest, sample_index: int, generation: Generation) -> None:
        self.put_many(teacher_id, request, sample_index, [generation])

    # -- misc ----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def count(self, teacher_id: str | None = None) -> int:
        if teacher_id is None:
            return len(self)
        return int(
            self._conn.execute("SELECT COUNT(*) FROM generations WHERE teacher_id=?", (teacher_id,)).fetchone()[0]
        )

    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error:  # pragma: no cover - closing twice is harmless
            pass

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
