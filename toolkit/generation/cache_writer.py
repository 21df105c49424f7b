"""The generation cache's group-commit writer thread (see :mod:`toolkit.generation.cache` for the durability contract).

Kept apart from :mod:`toolkit.generation.cache` (keys, reads, the public class) because it is the one piece with threads.

Commit callbacks: a submission may carry ``on_commit`` and a ``token``. After the transaction holding it has
*committed*, the writer thread calls ``on_commit(tokens)`` with the tokens of consecutive submissions that share
the same callback, in submission order (one call per callback per group commit, not one per request: the engine
does its per-answer bookkeeping in batches). A submission is counted as committed (``flush`` returns, a slot is
freed for back-pressure) only after its callback returned, so ``flush()`` also means "every callback so far ran".
Callbacks run in the writer thread: they must be quick and must not call the cache's write methods (``submit``,
``put``, ``flush``, ``get`` flushes too) or they would wait for the thread that runs them. An exception from a
callback is logged and does not stop the writer (the rows are committed; the callback's owner reports its own
errors, as :func:`toolkit.generation.run_generation` does).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from toolkit.generation.cache_journal import AnswerJournal

logger = logging.getLogger(__name__)

COLUMNS = (
    "key",
    "teacher_id",
    "sample_index",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "logprobs",
    "created_at",
    "reasoning_content",
    "top_logprobs",
)
INSERT_SQL = f"INSERT OR REPLACE INTO generations ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

CommitCallback = Callable[[list[Any]], None]


class CacheWriteError(RuntimeError):
    """The cache's writer thread failed to commit; the cause is the SQLite error."""


def notify_committed(entries: list[tuple[list[tuple], CommitCallback | None, Any]]) -> None:
    """Call each entry's ``on_commit`` once per run of consecutive entries sharing it, with their tokens."""
    i = 0
    while i < len(entries):
        callback = entries[i][1]
        j = i + 1
        while j < len(entries) and entries[j][1] is callback:
            j += 1
        if callback is not None:
            try:
                callback([entry[2] for entry in entries[i:j]])
            except Exception:  # noqa: BLE001 - committed is committed; the callback owner reports its own errors
                logger.exception("generation cache: an on_commit callback failed")
        i = j


class GroupCommitWriter:
    """Background thread committing submitted rows in groups (see :mod:`toolkit.generation.cache` for the contract).

    Cheap for the producer: ``submit`` appends under an uncontended lock and wakes the writer only when the
    writer is idle (first pending request) or the batch is full, not once per request: a cross-thread wake-up
    per request costs more than the commit it saves on a loaded 2-core box (the woken thread preempts the
    event loop and competes for the GIL).
    """

    def __init__(self, path: str, *, max_batch: int, max_delay: float, timeout: float):
        self.path = path
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.timeout = timeout
        self.journal = AnswerJournal(path)  # a submitted answer is on disk before it waits for its commit
        self.error: BaseException | None = None
        self.commits = 0
        self._cond = threading.Condition(threading.Lock())
        self._buf: list[tuple[list[tuple], CommitCallback | None, Any]] = []  # submitted, not yet taken
        self._first_at = 0.0  # when the oldest request in _buf was submitted
        self._submitted = 0  # requests ever submitted
        self._committed = 0  # requests ever committed (and their callbacks returned)
        self._flushers = 0  # threads waiting in flush(): commit at once
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="generation-cache-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Submitted but not yet committed requests (never more than ``max_batch``)."""
        return self._submitted - self._committed

    # -- producer side (any thread but the writer's) --------------------------------------------------------
    def submit(self, rows: list[tuple], on_commit: CommitCallback | None = None, token: Any = None) -> None:
        with self._cond:
            while self.error is None and self._submitted - self._committed >= self.max_batch:
                self._cond.notify_all()  # back-pressure: the batch is full, commit it; wait for a slot
                self._cond.wait(0.5)
            self._raise_if_failed()
            if self._stop:
                raise CacheWriteError(f"generation cache {self.path}: the writer was closed")
            self.journal.append(rows)
            if not self._buf:
                self._first_at = time.monotonic()
            self._buf.append((rows, on_commit, token))
            self._submitted += 1
            pending = self._submitted - self._committed
            if pending == 1 or pending >= self.max_batch:
                self._cond.notify_all()  # the writer is idle, or the batch is full

    def flush(self) -> None:
        with self._cond:
            target = self._submitted
            self._flushers += 1
            try:
                self._cond.notify_all()
                while self.error is None and self._committed < target and self._thread.is_alive():
                    self._cond.wait(0.5)
            finally:
                self._flushers -= 1
            self._raise_if_failed()

    def close(self) -> None:
        try:
            self.flush()
            with self._cond:
                self.journal.close()  # everything is committed: the journal has nothing left to recover
        finally:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            self._thread.join()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise CacheWriteError(f"generation cache {self.path}: a commit failed ({self.error!r})") from self.error

    # -- writer thread --------------------------------------------------------------------------------------
    def _take_batch(self) -> list[tuple[list[tuple], CommitCallback | None, Any]] | None:
        """Wait until a batch is due (full, ``max_delay`` old, flush or close); None when stopping idle."""
        with self._cond:
            while not self._buf and not self._stop:
                self._cond.wait()
            if not self._buf:
                return None
            while len(self._buf) < self.max_batch and not self._flushers and not self._stop:
                left = self._first_at + self.max_delay - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._buf = self._buf[: self.max_batch], self._buf[self.max_batch :]
            if self._buf:
                self._first_at = time.monotonic()
            return batch

    def _run(self) -> None:
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")
            while True:
                batch = self._take_batch()
                if batch is None:
                    return
                try:
                    conn.execute("BEGIN")
                    conn.executemany(INSERT_SQL, [row for rows, _, _ in batch for row in rows])
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                notify_committed(batch)  # outside the lock: producers keep submitting meanwhile
                with self._cond:
                    self.commits += 1
                    self._committed += len(batch)
                    self.journal.committed(self._committed)
                    self._cond.notify_all()  # flushers and producers waiting for a slot
        except BaseException as exc:  # noqa: BLE001 - reported to the producer by the next submit/flush/close
            logger.error("generation cache %s: group commit failed: %r", self.path, exc)
            with self._cond:
                self.error = exc
                self._buf = []
                self._cond.notify_all()
        finally:
            if conn is not None:
                conn.close()
