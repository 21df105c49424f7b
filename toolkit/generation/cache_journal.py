"""The generation cache's answer journal: every submitted answer is on disk the moment it is handed over.

Group commit (:mod:`toolkit.generation.cache_writer`) batches SQLite transactions for throughput, so an answer
waits up to ``max_delay`` for its commit. A ``kill -9`` in that window used to lose answers the teacher had
already sent (and paid for). The journal closes the window: :meth:`AnswerJournal.append` writes the answer's
rows as one JSON line with a single ``write(2)`` before the writer thread sees them. A killed process's writes
are in the kernel's page cache and survive it (only an OS crash could drop them, as with
``synchronous=NORMAL``). The SQLite commit stays batched.

Layout: ``<cache file>.answers/<pid>-<random>-<segment>.jsonl``. A writer owns its segment files and holds an
exclusive ``flock`` on the one it appends to; a segment is deleted once every answer in it is committed (the
writer rotates to a new segment every ``segment_size`` answers, so a long job does not keep a second copy of its
answers). When a cache is opened for writing, :func:`replay_journals` commits the rows of every segment no live
process holds (the previous run was killed) and deletes it. Replaying a segment twice, or one whose rows were
committed already, is harmless: rows are keyed and written with ``INSERT OR REPLACE``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import sqlite3
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_SIZE = 4096  # answers per journal segment before the writer starts a new one
LINE_ENCODER = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps with options builds one per call


def journal_dir(cache_path: str) -> Path:
    """Folder of the journal segments of the cache at ``cache_path``."""
    path = Path(cache_path)
    return path.with_name(path.name + ".answers")


class AnswerJournal:
    """Append-only segments of submitted answers (one JSON line of rows per answer).

    Not thread-safe: the cache writer calls :meth:`append` under its own lock, and :meth:`committed` from the
    writer thread under the same lock.

    Args:
        cache_path: The SQLite file the journal belongs to.
        segment_size: Answers per segment before rotating.
    """

    def __init__(self, cache_path: str, *, segment_size: int = DEFAULT_SEGMENT_SIZE):
        self.folder = journal_dir(cache_path)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.segment_size = segment_size
        self._prefix = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._segment = -1
        self._fd: int | None = None
        self._path: Path | None = None
        self._in_segment = 0
        self._appended = 0  # answers ever appended (their sequence numbers are 1..appended)
        self._closed_segments: list[tuple[Path, int]] = []  # (file, sequence number of its last answer)
        self._open_next()

    def _open_next(self) -> None:
        if self._fd is not None:
            self._closed_segments.append((self._path, self._appended))
            os.close(self._fd)  # also releases the flock: the rows stay until committed, then the file goes
        self._segment += 1
        self._path = self.folder / f"{self._prefix}-{self._segment:06d}.jsonl"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # tells a replaying process "alive, keep out"
        self._in_segment = 0

    def append(self, rows: list[tuple]) -> None:
        """Write one answer's rows (one line, one ``write`` call) before it is queued for commit."""
        if self._in_segment >= self.segment_size:
            self._open_next()
        os.write(self._fd, (LINE_ENCODER.encode(rows) + "\n").encode())
        self._in_segment += 1
        self._appended += 1

    def committed(self, count: int) -> None:
        """The first ``count`` appended answers are committed: delete the closed segments they fill."""
        while self._closed_segments and self._closed_segments[0][1] <= count:
            path, _ = self._closed_segments.pop(0)
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Everything appended is committed (the caller flushed): remove this writer's segments."""
        self.committed(self._appended)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._path.unlink(missing_ok=True)


def read_segment(path: Path) -> list[tuple]:
    """Rows of one segment; a line cut short by a kill (the last one) is skipped."""
    rows: list[tuple] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                rows.extend(tuple(row) for row in json.loads(line))
            except ValueError:
                logger.warning("%s:%d: skipping a journal line cut short by a kill", path, number)
    return rows


def replay_journals(conn: sqlite3.Connection, cache_path: str, insert_sql: str) -> int:
    """Commit the rows of every abandoned journal segment of ``cache_path`` and delete it; returns the row count.

    A segment whose flock another process holds belongs to a live writer and is left alone.
    """
    folder = journal_dir(cache_path)
    if not folder.is_dir():
        return 0
    replayed = 0
    for path in sorted(folder.glob("*.jsonl")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # its writer committed and deleted it meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            rows = read_segment(path)
            with conn:
                conn.execute("BEGIN")
                conn.executemany(insert_sql, rows)
            path.unlink(missing_ok=True)
            replayed += len(rows)
        finally:
            os.close(fd)
    if replayed:
        logger.info("generation cache %s: recovered %d journaled samples of a killed run", cache_path, replayed)
    return replayed
