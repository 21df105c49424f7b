"""The Files and Batches endpoints of the fake OpenAI server (``/v1/files``, ``/v1/batches``).

:class:`FakeBatchAPI` is owned by :class:`toolkit.testing.openai_server.FakeOpenAIServer` (``server.batch``):

- ``POST /v1/files`` (multipart upload), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``;
- ``POST /v1/batches``, ``GET /v1/batches/{id}`` (retrieve), ``GET /v1/batches`` (list, newest first, ``after``
  cursor), ``POST /v1/batches/{id}/cancel``.

A batch is ``validating`` when created; each retrieve moves it on (``in_progress`` after the first), and it
finishes on the retrieve after ``polls_to_finish`` retrieves, unless ``hold`` is set (it then stays
``in_progress``: a job can be killed while polling). It finishes as ``outcome`` says:

- ``completed``: every line is run through the server's normal completion logic (same deterministic texts as
  online calls); ``line_fault(index, line) -> kind | None`` picks lines that go wrong: ``"error"`` (error file,
  ``response: null`` + ``error``), ``"500"`` (error file, a response with status 500), ``"malformed"``
  (output file, a 200 whose body has no choices), ``"drop"`` (in neither file); ``duplicate_lines`` writes
  every output line twice;
- ``expired``: the first ``expire_after`` lines ran, the others are in the error file as ``batch_expired``;
- ``failed``: validation failed, ``errors`` says why, no output file;
- ``cancelled``: like expired, with code ``batch_cancelled``.
``api_calls`` logs ``(method, path)`` of every Files/Batches call.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import default as default_policy

OUTCOMES = ("completed", "expired", "failed", "cancelled")


def _not_found(what: str) -> tuple[int, dict, bytes]:
    return 404, {}, json.dumps({"error": {"message": f"no such {what}", "type": "invalid_request_error"}}).encode()


class FakeBatchAPI:
    """State and handlers of the Files / Batches endpoints (see the module docstring)."""

    def __init__(self, run_line: Callable[[str, dict], tuple[int, dict]]):
        self.run_line = run_line  # (url path, body) -> (status, response body): the server's completion logic
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.api_calls: list[tuple[str, str]] = []
        self.polls_to_finish = 1
        self.hold = False
        self.outcome = "completed"
        self.expire_after = 0
        self.line_fault: Callable[[int, dict], str | None] | None = None
        self.duplicate_lines = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- helpers for tests ----------------------------------------------------------------------------------
    def input_lines(self, batch_id: str) -> list[dict]:
        data = self.files[self.batches[batch_id]["input_file_id"]]["data"]
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]

    def submitted_custom_ids(self) -> list[str]:
        """Custom ids over every created batch, in creation order (duplicates kept)."""
        return [line["custom_id"] for bid in self.batches for line in self.input_lines(bid)]

    def calls(self, method: str, prefix: str) -> int:
        return sum(m == method and p.startswith(prefix) for m, p in self.api_calls)

    # -- routing --------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str, headers: dict, raw: bytes) -> tuple[int, dict, bytes]:
        with self._lock:
            self.api_calls.append((method, path))
        parts = path.strip("/").split("/")[1:]  # drop "v1"
        if parts[0] == "files":
            if method == "POST" and len(parts) == 1:
                return self._upload(headers.get("content-type", ""), raw)
            file = self.files.get(parts[1]) if len(parts) > 1 else None
            if file is None:
                return _not_found("file")
            if len(parts) == 3 and parts[2] == "content":
                return 200, {"Content-Type": "application/octet-stream"}, file["data"]
            return 200, {}, json.dumps(file["object"]).encode()
        if method == "POST" and len(parts) == 1:
            return self._create(json.loads(raw or b"{}"))
        if method == "GET" and len(parts) == 1:
            return self._list(query)
        batch = self.batches.get(parts[1]) if len(parts) > 1 else None
        if batch is None:
            return _not_found("batch")
        if method == "POST" and parts[-1] == "cancel":
            batch["_cancel"] = True
            batch["status"] = "cancelling"
        elif method == "GET":
            self._advance(batch)
        return 200, {}, json.dumps(self._public(batch)).encode()

    def _upload(self, content_type: str, raw: bytes) -> tuple[int, dict, bytes]:
        msg = BytesParser(policy=default_policy).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + raw
        )
        fields, data, filename = {}, None, "upload.jsonl"
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                data, filename = part.get_payload(decode=True), part.get_filename()
            else:
                fields[name] = part.get_payload(decode=True).decode()
        if data is None or fields.get("purpose") != "batch":
            return 400, {}, b'{"error": {"message": "need a file and purpose=batch"}}'
        return 200, {}, json.dumps(self._store_file(data, filename, "batch")).encode()

    def _store_file(self, data: bytes, filename: str, purpose: str) -> dict:
        fid = f"file-{next(self._ids)}"
        obj = {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[fid] = {"object": obj, "data": data}
        return obj

    def _create(self, body: dict) -> tuple[int, dict, bytes]:
        if body.get("input_file_id") not in self.files or body.get("completion_window") != "24h":
            return 400, {}, b'{"error": {"message": "bad input_file_id or completion_window"}}'
        bid = f"batch_{next(self._ids)}"
        self.batches[bid] = {
            "id": bid,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": time.time(),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
            "_polls": 0,
            "_outcome": self.outcome,
        }
        return 200, {}, json.dumps(self._public(self.batches[bid])).encode()

    def _list(self, query: str) -> tuple[int, dict, bytes]:
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        newest_first = sorted(self.batches.values(), key=lambda b: b["created_at"], reverse=True)
        if "after" in params:
            ids = [b["id"] for b in newest_first]
            newest_first = newest_first[ids.index(params["after"]) + 1 :] if params["after"] in ids else []
        limit = int(params.get("limit", 20))
        page = [self._public(b) for b in newest_first[:limit]]
        data = {"object": "list", "data": page, "has_more": len(newest_first) > limit}
        data.update(first_id=page[0]["id"] if page else None, last_id=page[-1]["id"] if page else None)
        return 200, {}, json.dumps(data).encode()

    @staticmethod
    def _public(batch: dict) -> dict:
        out = {k: v for k, v in batch.items() if not k.startswith("_")}
        out["created_at"] = int(out["created_at"])
        return out

    # -- the batch lifecycle --------------------------------------------------------------------------------
    def _advance(self, batch: dict) -> None:
        if batch["status"] in OUTCOMES:
            return
        batch["_polls"] += 1
        lines = self.input_lines(batch["id"])
        batch["request_counts"]["total"] = len(lines)
        if batch.get("_cancel"):
            return self._finish(batch, lines, "cancelled")
        if self.hold or batch["_polls"] <= self.polls_to_finish:
            batch["status"] = "in_progress"
            return None
        return self._finish(batch, lines, batch["_outcome"])

    def _finish(self, batch: dict, lines: list[dict], outcome: str) -> None:
        batch["status"] = outcome
        if outcome == "failed":
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": "bad line (fake)"}]}
            return
        ran = lines if outcome == "completed" else lines[: self.expire_after]
        out, err = [], []
        for index, line in enumerate(ran):
            kind = self.line_fault(index, line) if self.line_fault else None
            record = {"id": f"batch_req_{next(self._ids)}", "custom_id": line["custom_id"], "error": None}
            if kind == "drop":
                continue
            if kind == "error":
                err.append({**record, "response": None, "error": {"code": "server_error", "message": "(fake)"}})
                continue
            if kind == "500":
                body = {"error": {"message": "internal error (fake)", "type": "server_error"}}
                err.append({**record, "response": {"status_code": 500, "body": body}})
                continue
            status, body = self.run_line(line["url"], line["body"])
            if kind == "malformed":
                status, body = 200, {"id": "x", "choices": []}
            (out if status == 200 else err).append({**record, "response": {"status_code": status, "body": body}})
        code = "batch_expired" if outcome == "expired" else "batch_cancelled"
        for line in lines[len(ran) :]:
            err.append(
                {
                    "id": "x",
                    "custom_id": line["custom_id"],
                    "response": None,
                    "error": {"code": code, "message": f"this request could not be executed ({outcome})"},
                }
            )
        if self.duplicate_lines:
            out = [r for r in out for _ in range(2)]
        batch["request_counts"].update(completed=len(out), failed=len(err))
        for records, key in ((out, "output_file_id"), (err, "error_file_id")):
            if records:
                data = "".join(json.dumps(r) + "\n" for r in records).encode()
                batch[key] = self._store_file(data, f"{batch['id']}_{key}.jsonl", "batch_output")["id"]


__all__ = ["OUTCOMES", "FakeBatchAPI"]
