"""Content-addressed generation cache in SQLite (WAL).

Key = sha256 of (teacher id, exact messages/prompt, sampling parameters, sample index). Each sample index is a
separate row, so asking for k=5 after k=4 pays only for the 5th sample, and two jobs that share a prompt share
its samples. Values are *raw* teacher outputs (text, finish reason, usage, optional logprobs, a reasoning
trace): parsing happens
after the cache, so changing a parser never re-pays for calls.

Writes, durability and what a ``kill -9`` can lose
--------------------------------------------------
- :meth:`GenerationCache.put_many` is synchronous: when it returns, the request's samples are committed.
- :meth:`GenerationCache.submit` is what the generation engine uses. It hands one completed request (all its
  samples) to a background *writer thread* that owns its own SQLite connection and commits in small groups
  (group commit): a transaction is committed as soon as it holds ``max_batch`` requests (default 64) or
  ``max_delay`` seconds (default 0.02) after its first request arrived, whichever comes first. The samples of
  one request always land in the same transaction (all or none). Requests are committed in submission order
  (a later submission of the same key wins).
- Every submitted request is first appended to the answer journal (:mod:`toolkit.generation.cache_journal`,
  one ``write`` per request, before :meth:`submit` returns). So a ``kill -9`` of the process loses only the
  requests in flight at the teacher: an answer handed to the cache is never asked again. The next writable open
  of the cache commits the journaled answers the killed run had not committed yet.
- At most ``max_batch`` submitted requests are ever uncommitted: :meth:`submit` blocks (back-pressure) while
  ``max_batch`` requests are pending (submitted, not yet committed).
- ``submit(..., on_commit=fn, token=t)`` calls ``fn([t, ...])`` from the writer thread once the request is
  committed (batched per group commit; :mod:`toolkit.generation.cache_writer`). The engine acknowledges an answer
  (progress, item completion) only there, so nothing it reported as done can be lost by a kill: what a kill
  can lose is only answers the engine had not acknowledged yet.
- :meth:`flush` blocks until everything submitted so far is committed (and its ``on_commit`` callbacks
  returned); :meth:`close` (and the context manager, and an ``atexit`` hook) flush. :meth:`get_many` flushes
  first, so a reader of the same cache object always sees its own writes. ``run_generation`` flushes on return
  and on any exception.
- A failed commit (disk full, database locked past the timeout, ...) is not swallowed: the next
  :meth:`submit`, :meth:`flush` or :meth:`close` raises :class:`CacheWriteError` (the batch is lost, the error
  is the cause) and the writer accepts nothing further.
- ``synchronous=NORMAL`` in WAL mode keeps commits durable against a killed process; only an OS crash / power
  loss could drop the last few commits.
- ``":memory:"`` caches have no writer thread (another connection would see another database): ``submit``
  writes synchronously.

Nothing secret is stored: the key inputs are the teacher id (backend, model, host), the request content and
sampling parameters.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from toolkit.generation.cache_journal import replay_journals
from toolkit.generation.cache_writer import INSERT_SQL, CacheWriteError, CommitCallback, GroupCommitWriter
from toolkit.runtime import cache_dir
from toolkit.teachers.base import Generation, GenerationRequest, Usage
from toolkit.teachers.request_keys import cache_key, cache_keys, request_fingerprint

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 64  # requests per group commit (and the bound on uncommitted requests)
DEFAULT_MAX_DELAY = 0.02  # seconds between a request's submission and its commit, at most (when not starved)

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
    created_at REAL NOT NULL,
    reasoning_content TEXT,
    top_logprobs TEXT
)
"""
# Columns added after the first release: a cache file created before them gains them when opened for writing.
ADDED_COLUMNS = {"reasoning_content": "TEXT", "top_logprobs": "TEXT"}


def default_cache_path() -> Path:
    """``$TOOLKIT_CACHE/generations.sqlite`` (default ``~/.cache/distill-toolkit``)."""
    return cache_dir() / "generations.sqlite"


def _close_at_exit(ref: weakref.ref) -> None:
    cache = ref()
    if cache is not None:
        try:
            cache.close()
        except Exception as exc:  # noqa: BLE001 - interpreter is exiting; say what was lost
            logger.error("generation cache: final flush at exit failed: %r", exc)


class GenerationCache:
    """SQLite-backed store of raw generations. Use as a context manager or call :meth:`close`.

    Args:
        path: Database file (parent dirs are created). ``":memory:"`` for a throwaway cache.
        read_only: Open without writing (``put`` / ``submit`` raise).
        max_batch: Group commit: requests per transaction at most, and the bound on uncommitted requests.
        max_delay: Group commit: seconds a submitted request waits for companions before its commit.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        read_only: bool = False,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_delay: float = DEFAULT_MAX_DELAY,
    ):
        if max_batch < 1 or max_delay < 0:
            raise ValueError("max_batch must be >= 1 and max_delay >= 0")
        self.path = str(path) if path is not None else str(default_cache_path())
        self.read_only = read_only
        self.max_batch = max_batch
        self.max_delay = max_delay
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: tests and the HF backend may hand the cache across threads; all access to
        # this (reader) connection is serialised by the caller. Group-committed writes use the writer's own one.
        self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)
        self._columns = self._upgrade_schema()
        if self.path != ":memory:" and not read_only:
            replay_journals(self._conn, self.path, INSERT_SQL)  # answers a killed run received but never committed
        self._writer: GroupCommitWriter | None = None
        self._writer_lock = threading.Lock()
        self._pending = False  # something was submitted since the last flush
        self.hits = 0
        self.misses = 0

    def _upgrade_schema(self) -> set[str]:
        """Add the columns an older cache file lacks (when writable); returns the columns it has."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(generations)")}
        if not self.read_only:
            for name, kind in ADDED_COLUMNS.items():
                if name not in columns:
                    self._conn.execute(f"ALTER TABLE generations ADD COLUMN {name} {kind}")
                    columns.add(name)
        return columns

    def _select_columns(self) -> str:
        optional = [name if name in self._columns else f"NULL AS {name}" for name in ADDED_COLUMNS]
        return ", ".join(["key", "text", "finish_reason", "prompt_tokens", "completion_tokens", "logprobs", *optional])

    # -- reads ---------------------------------------------------------------------------------------------
    def get(self, teacher_id: str, request: GenerationRequest, sample_index: int) -> Generation | None:
        """The cached generation for one sample, or None."""
        return self.get_many(teacher_id, request, [sample_index])[0]

    def get_many(
        self, teacher_id: str, request: GenerationRequest, sample_indices: Sequence[int]
    ) -> list[Generation | None]:
        """Cached generations for ``sample_indices`` (None where missing), in the order asked."""
        return self.get_keys(cache_keys(teacher_id, request, sample_indices))

    def get_keys(self, keys: Sequence[str]) -> list[Generation | None]:
        """Cached generations for precomputed :func:`cache_key` s (None where missing), in order.

        Flushes pending group-committed writes first, so a cache object always reads its own writes.
        """
        if self._pending:
            self.flush()
        found: dict[str, Generation] = {}
        for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT {self._select_columns()} FROM generations WHERE key IN ({marks})", chunk
            ).fetchall()
            for key, text, finish, p_tok, c_tok, logprobs, reasoning, top in rows:
                found[key] = Generation(
                    text=text,
                    finish_reason=finish,
                    usage=Usage(int(p_tok), int(c_tok)),
                    logprobs=json.loads(logprobs) if logprobs else None,
                    reasoning_content=reasoning,
                    top_logprobs=json.loads(top) if top else None,
                )
        out = [found.get(k) for k in keys]
        hits = sum(g is not None for g in out)
        self.hits += hits
        self.misses += len(out) - hits
        return out

    # -- writes --------------------------------------------------------------------------------------------
    def _rows(
        self,
        teacher_id: str,
        request: GenerationRequest,
        first_index: int,
        generations: Iterable[Generation],
        keys: Sequence[str] | None = None,
    ) -> list[tuple]:
        if self.read_only:
            raise PermissionError(f"cache {self.path} was opened read-only")
        gens = list(generations)
        if keys is None or len(keys) != len(gens):
            keys = cache_keys(teacher_id, request, range(first_index, first_index + len(gens)))
        now = time.time()
        return [
            (
                key,
                teacher_id,
                first_index + j,
                gen.text,
                gen.finish_reason,
                int(gen.usage.prompt_tokens),
                int(gen.usage.completion_tokens),
                json.dumps(gen.logprobs) if gen.logprobs is not None else None,
                now,
                gen.reasoning_content,
                json.dumps(gen.top_logprobs, ensure_ascii=False) if gen.top_logprobs is not None else None,
            )
            for j, (key, gen) in enumerate(zip(keys, gens))
        ]

    def _write_now(self, rows: list[tuple]) -> None:
        with self._conn:  # BEGIN ... COMMIT (atomic: all samples of a completed request or none)
            self._conn.execute("BEGIN")
            self._conn.executemany(INSERT_SQL, rows)

    def put_many(
        self, teacher_id: str, request: GenerationRequest, first_index: int, generations: Iterable[Generation]
    ) -> None:
        """Store ``generations`` as samples ``first_index, first_index+1, ...``, committed (atomically) on return."""
        rows = self._rows(teacher_id, request, first_index, generations)
        if self._writer is None:
            self._write_now(rows)
        else:  # keep submission order with what the writer still holds
            self._writer.submit(rows)
            self.flush()

    def put(self, teacher_id: str, request: GenerationRequest, sample_index: int, generation: Generation) -> None:
        self.put_many(teacher_id, request, sample_index, [generation])

    def submit(
        self,
        teacher_id: str,
        request: GenerationRequest,
        first_index: int,
        generations: Iterable[Generation],
        *,
        keys: Sequence[str] | None = None,
        on_commit: CommitCallback | None = None,
        token: Any = None,
    ) -> None:
        """Like :meth:`put_many` but group-committed by the writer thread (see the module docstring).

        Args:
            keys: The samples' :func:`cache_key` s when the caller has them already (the engine computed them
                while planning); saves hashing the request again on the hot path.
            on_commit: Called as ``on_commit([token, ...])`` once this request's rows are *committed*, batched with
                the consecutive submissions that share the callback (see :mod:`toolkit.generation.cache_writer`). It runs in
                the writer thread (in the caller's, for a ``":memory:"`` cache) and must not call back into
                the cache's write methods.
            token: Passed to ``on_commit`` for this request.

        Raises:
            CacheWriteError: an earlier group commit failed.
        """
        rows = self._rows(teacher_id, request, first_index, generations, keys)
        if self.path == ":memory:":
            self._write_now(rows)
            if on_commit is not None:
                on_commit([token])
            return
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = GroupCommitWriter(
                        self.path, max_batch=self.max_batch, max_delay=self.max_delay, timeout=60.0
                    )
                    atexit.register(_close_at_exit, weakref.ref(self))
        self._pending = True
        self._writer.submit(rows, on_commit, token)

    def flush(self) -> None:
        """Block until every submitted request is committed. Raises :class:`CacheWriteError` if one failed."""
        if self._writer is not None:
            self._writer.flush()
        self._pending = False

    # -- misc ----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        if self._pending:
            self.flush()
        return int(self._conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def count(self, teacher_id: str | None = None) -> int:
        if teacher_id is None:
            return len(self)
        if self._pending:
            self.flush()
        return int(
            self._conn.execute("SELECT COUNT(*) FROM generations WHERE teacher_id=?", (teacher_id,)).fetchone()[0]
        )

    def close(self) -> None:
        """Flush and stop the writer (raises :class:`CacheWriteError` if a commit failed), close the connection."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.close()
        finally:
            self._pending = False
            try:
                self._conn.close()
            except sqlite3.Error:  # pragma: no cover - closing twice is harmless
                pass

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = [
    "CacheWriteError",
    "GenerationCache",
    "cache_key",
    "cache_keys",
    "default_cache_path",
    "request_fingerprint",
]
