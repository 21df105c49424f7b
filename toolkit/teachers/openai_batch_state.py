"""The state files of the OpenAI Batch mode: one atomically written JSON file per submitted batch.

A :class:`BatchState` records what is known about one batch (its custom ids, then the uploaded input file id,
then the batch id and status); :class:`BatchStore` reads and writes them, and the downloaded result copies, in
one ``batch_dir``. See :mod:`toolkit.teachers.openai_batch` for how they make re-runs resume exactly once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolkit.teachers.base import TeacherError

__all__ = ["BatchState", "BatchStore", "missing_error"]


@dataclass
class BatchState:
    """What is known about one submitted (or about to be submitted) batch; one JSON file per batch."""

    name: str
    endpoint: str
    custom_ids: list[str]
    created_at: float = field(default_factory=time.time)
    input_file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[str] = field(default_factory=list)
    reported: bool = False


class BatchStore:
    """The state files (``<name>.json``) and downloaded result copies of one ``batch_dir``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def states(self) -> list[BatchState]:
        if not self.root.is_dir():
            return []
        out = []
        for path in self.root.glob("batch-*.json"):
            try:
                out.append(BatchState(**json.loads(path.read_text())))
            except (ValueError, TypeError) as exc:  # a foreign or truncated file: say so, never guess
                raise ValueError(f"{path}: not a batch state file ({exc}); move it out of the batch_dir") from exc
        return sorted(out, key=lambda s: (s.created_at, s.name))

    def save(self, state: BatchState) -> None:
        self.write(f"{state.name}.json", json.dumps(asdict(state), indent=1))

    def discard(self, state: BatchState) -> None:
        (self.root / f"{state.name}.json").unlink(missing_ok=True)

    def write(self, filename: str, text: str) -> None:
        """Atomic write: a reader (or a re-run after a kill) sees the old file or the new one, never half."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{filename}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / filename)

    def read(self, filename: str) -> str | None:
        path = self.root / filename
        return path.read_text(encoding="utf-8") if path.is_file() else None


def missing_error(state: BatchState) -> TeacherError:
    """Why a requested line has no result in a finished batch."""
    if state.status == "failed":
        return TeacherError(
            f"batch {state.batch_id} failed: {'; '.join(state.errors) or 'no reason given'}", error_type="BatchFailed"
        )
    if state.status == "expired":
        return TeacherError(f"batch {state.batch_id} expired before this request ran", error_type="BatchExpired")
    if state.status == "cancelled":
        return TeacherError(
            f"batch {state.batch_id} was cancelled before this request ran", error_type="BatchCancelled"
        )
    return TeacherError(
        f"batch {state.batch_id} ({state.status}) has no result for this request", error_type="MissingBatchResult"
    )
