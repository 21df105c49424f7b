"""The OpenAI Batch API mode of the openai teacher (``TeacherConfig.mode = "batch"``): half price, results <= 24h.

:meth:`OpenAIBatchTeacher.generate_each` turns the engine's requests into JSONL lines (``custom_id`` = the cache
key of the request's first sample plus its sample count, so an answer maps back to its cache rows in any later
run), uploads them (``files.create(purpose="batch")``), creates one batch per endpoint and chunk
(``batches.create``), polls with a growing wait (``batches.retrieve``), downloads the output and error files
(``files.content``) and hands every line to the engine, which commits it to the same generation cache as online
mode (parsing happens after the cache, as always).

Resume and exactly-once submission. Every batch has a small JSON *state file* in ``batch_dir`` (written
atomically at each step: the custom ids before the upload, then the input file id, then the batch id):

- a killed job re-run with the same requests finds the saved batches, polls them and never submits their
  requests again; only requests that no saved batch covers are submitted;
- killed between ``batches.create`` and saving its id: the state has the uploaded file id, and the batch is
  found again by listing batches (``input_file_id`` / ``metadata.toolkit_batch``) instead of created twice;
- killed before the upload was recorded: nothing was submitted, the state is dropped and its requests are sent.

Failures are never dropped silently: a line in the error file (or an error status in the output file), a line
missing from a finished batch, and every line of a failed / expired / cancelled batch is reported to the engine
as that request's failure (an item failure in ``failures.jsonl``). Once a batch's results were handed over
(``reported``), a later run re-reads its successes from the saved output copy (no second payment) and submits
its failed requests again, like online mode retries failures on a re-run. One job per ``batch_dir`` at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import openai

from toolkit.runtime import cache_dir
from toolkit.teachers.base import Generation, GenerationRequest, ResultCallback, TeacherError
from toolkit.teachers.config import TeacherConfig
from toolkit.teachers.openai import OpenAITeacher
from toolkit.teachers.openai_batch_state import BatchState, BatchStore, missing_error
from toolkit.teachers.openai_request import MalformedResponseError, endpoint, parse_response, request_body
from toolkit.teachers.request_keys import cache_key

logger = logging.getLogger(__name__)

TERMINAL = ("completed", "failed", "expired", "cancelled")
MAX_BATCH_BYTES = 190 * 2**20  # the API takes input files up to 200 MB
POLL_GROWTH = 1.5
Result = list[Generation] | TeacherError


def custom_id(teacher_id: str, request: GenerationRequest) -> str:
    """The cache key of the request's first sample, plus how many samples the line asks for."""
    return f"{cache_key(teacher_id, request, request.sample_offset)}-n{request.n}"


class OpenAIBatchTeacher(OpenAITeacher):
    """The openai teacher over the Batch API. Same id (and cache rows) as online mode; batch prices."""

    def __init__(self, config: TeacherConfig):
        super().__init__(config)
        if config.batch_dir is not None:
            self.batch_dir = Path(config.batch_dir)
        else:
            self.batch_dir = cache_dir() / "openai_batches"
        self.poll_interval = config.batch_poll_interval
        self.poll_max_interval = config.batch_poll_max_interval
        self.max_wait = config.batch_max_wait
        self.max_requests = config.batch_max_requests

    def __repr__(self) -> str:
        return f"OpenAIBatchTeacher(id={self.id!r}, batch_dir={str(self.batch_dir)!r})"

    def _client(self):
        # The SDK retries these few control calls itself (429/5xx/connection errors, with backoff).
        return openai.OpenAI(
            api_key=self._api_key, base_url=self.base_url, max_retries=self.max_retries, timeout=self.timeout
        )

    # -- the engine's entry point ---------------------------------------------------------------------------
    def generate_each(
        self,
        requests: Sequence[GenerationRequest],
        on_result: ResultCallback,
        admit: Callable[[int], bool] | None = None,
    ) -> None:
        if not requests:
            return
        by_id: dict[str, list[int]] = {}  # identical lines (two items, one prompt) are sent once, answered twice
        for i, req in enumerate(requests):
            by_id.setdefault(custom_id(self.id, req), []).append(i)
        client = self._client()
        store = BatchStore(self.batch_dir)
        try:
            waiting, refeed = self._saved_batches(client, store, requests, by_id)
            covered = {cid for _, wanted in waiting for cid in wanted} | set(refeed)
            fresh = [cid for cid in by_id if cid not in covered]
            # Already-submitted lines first: they are paid for whatever the budget says.
            order = [cid for _, wanted in waiting for cid in wanted] + list(refeed) + fresh
            admitted = _admit(order, by_id, admit)

            def deliver(cid: str, result: Result) -> bool:
                idxs = [i for i in by_id[cid] if i in admitted]
                for i in idxs:
                    on_result(i, result)
                return len(idxs) == len(by_id[cid])

            for cid, result in refeed.items():
                deliver(cid, result)
            fresh = [cid for cid in fresh if by_id[cid][0] in admitted]
            waiting += self._submit(client, store, requests, by_id, fresh, deliver)
            self._poll(client, store, requests, by_id, waiting, deliver)
        finally:
            client.close()

    # -- saved state ----------------------------------------------------------------------------------------
    def _saved_batches(self, client, store: BatchStore, requests, by_id):
        """Saved batches that cover requested lines: (batches to poll, {cid: result} re-read from results)."""
        waiting: list[tuple[BatchState, list[str]]] = []
        refeed: dict[str, Result] = {}
        seen: set[str] = set()
        for state in store.states():
            wanted = [cid for cid in state.custom_ids if cid in by_id and cid not in seen]
            if not wanted:
                continue
            if state.batch_id is None and state.input_file_id is not None:
                state.batch_id = self._find_batch(client, state)
                if state.batch_id is not None:
                    store.save(state)
            if state.batch_id is None:
                logger.info(
                    "%s: batch %s was never created; its %d requests are sent again",
                    self.id,
                    state.name,
                    len(state.custom_ids),
                )
                store.discard(state)
                continue
            if not state.reported:
                logger.info(
                    "%s: resuming batch %s (%s) for %d requests", self.id, state.batch_id, state.name, len(wanted)
                )
                waiting.append((state, wanted))
                seen.update(wanted)
                continue
            # Handed over before: successes come from the saved results (free), failures are submitted again.
            results = self._results(client, store, state, requests, by_id)
            for cid in wanted:
                if isinstance(results.get(cid), list):
                    refeed[cid] = results[cid]
                    seen.add(cid)
        return waiting, refeed

    def _find_batch(self, client, state: BatchState) -> str | None:
        """The batch created from ``state``'s uploaded file by a run killed before it saved the batch id."""
        for batch in client.batches.list(limit=100):
            if batch.input_file_id == state.input_file_id or (batch.metadata or {}).get("toolkit_batch") == state.name:
                logger.info("%s: found batch %s created for %s before a restart", self.id, batch.id, state.name)
                return batch.id
            if batch.created_at < state.created_at - 3600:  # newest first: older ones cannot be ours
                break
        return None

    # -- submission -----------------------------------------------------------------------------------------
    def _line(self, cid: str, req: GenerationRequest) -> str:
        body = request_body(self.model, req, req.n, req.sample_seed(0), reasoning=self.reasoning)
        return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1" + endpoint(req), "body": body})

    def _chunks(self, requests, by_id, cids: list[str]) -> Iterable[tuple[str, list[str], list[str]]]:
        """(endpoint, custom ids, JSONL lines) per batch: one endpoint per batch, under the count/size limits."""
        for path in ("/chat/completions", "/completions"):
            ids, lines, size = [], [], 0
            for cid in cids:
                req = requests[by_id[cid][0]]
                if endpoint(req) != path:
                    continue
                line = self._line(cid, req)
                nbytes = len(line.encode()) + 1
                if ids and (len(ids) >= self.max_requests or size + nbytes > MAX_BATCH_BYTES):
                    yield path, ids, lines
                    ids, lines, size = [], [], 0
                ids.append(cid)
                lines.append(line)
                size += nbytes
            if ids:
                yield path, ids, lines

    def _submit(self, client, store: BatchStore, requests, by_id, cids: list[str], deliver):
        submitted: list[tuple[BatchState, list[str]]] = []
        for path, ids, lines in self._chunks(requests, by_id, cids):
            digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
            state = BatchState(f"batch-{time.strftime('%Y%m%dT%H%M%S')}-{digest}", "/v1" + path, ids)
            store.save(state)  # intent first: a kill from here on never leads to a second submission
            try:
                data = ("\n".join(lines) + "\n").encode()
                uploaded = client.files.create(
                    file=(f"{state.name}.jsonl", data, "application/jsonl"), purpose="batch"
                )
                state.input_file_id = uploaded.id
                store.save(state)
                batch = client.batches.create(
                    input_file_id=uploaded.id,
                    endpoint=state.endpoint,
                    completion_window="24h",
                    metadata={"toolkit_batch": state.name},
                )
            except Exception as exc:  # noqa: BLE001 - e.g. a 400 on the upload: these requests fail, others go on
                # No answer to batches.create: it may exist all the same; adopt it rather than lose or resubmit it.
                found = self._find_batch(client, state) if state.input_file_id and _maybe_created(exc) else None
                if found is not None:
                    batch = client.batches.retrieve(found)
                    state.batch_id, state.status = batch.id, batch.status
                    store.save(state)
                    submitted.append((state, ids))
                    continue
                store.discard(state)
                logger.error("%s: submitting %d requests failed: %s: %s", self.id, len(ids), type(exc).__name__, exc)
                error = TeacherError(f"batch submission failed: {type(exc).__name__}: {exc}", error_type="BatchSubmit")
                for cid in ids:
                    deliver(cid, error)
                continue
            state.batch_id, state.status = batch.id, batch.status
            store.save(state)
            logger.info("%s: submitted batch %s (%d requests, %s)", self.id, batch.id, len(ids), state.name)
            submitted.append((state, ids))
        return submitted

    # -- polling and results --------------------------------------------------------------------------------
    def _poll(self, client, store: BatchStore, requests, by_id, waiting, deliver) -> None:
        deadline = None if self.max_wait is None else time.monotonic() + self.max_wait
        wait = self.poll_interval
        while waiting:
            still = []
            for state, wanted in waiting:
                batch = client.batches.retrieve(state.batch_id)
                counts = batch.request_counts
                logger.info(
                    "%s: batch %s %s (%s/%s done, %s failed)",
                    self.id,
                    batch.id,
                    batch.status,
                    getattr(counts, "completed", "?"),
                    getattr(counts, "total", "?"),
                    getattr(counts, "failed", "?"),
                )
                if batch.status not in TERMINAL:
                    still.append((state, wanted))
                    continue
                state.status = batch.status
                state.output_file_id, state.error_file_id = batch.output_file_id, batch.error_file_id
                errors = getattr(batch.errors, "data", None) or []
                state.errors = [f"{getattr(e, 'code', None)}: {getattr(e, 'message', None)}" for e in errors]
                store.save(state)
                results = self._results(client, store, state, requests, by_id)
                delivered = [deliver(cid, results[cid]) for cid in wanted]
                state.reported = all(delivered)
                store.save(state)
            waiting = still
            if not waiting:
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                logger.warning(
                    "%s: batch_max_wait reached with %d batches still running (%s); re-run the job to collect them",
                    self.id,
                    len(waiting),
                    ", ".join(s.batch_id for s, _ in waiting),
                )
                return
            time.sleep(wait if left is None else min(wait, left))
            wait = min(wait * POLL_GROWTH, self.poll_max_interval)

    def _download(self, client, store: BatchStore, file_id: str | None, filename: str) -> str:
        if file_id is None:
            return ""
        text = store.read(filename)
        if text is None:
            text = client.files.content(file_id).read().decode("utf-8")
            store.write(filename, text)  # a copy: a later run re-reads successes without the API
        return text

    def _results(self, client, store: BatchStore, state: BatchState, requests, by_id) -> dict[str, Result]:
        """One result per custom id of ``state`` that is requested now: generations, or the reason it failed."""
        results: dict[str, Result] = {}
        for file_id, kind in ((state.output_file_id, "output"), (state.error_file_id, "errors")):
            try:
                text = self._download(client, store, file_id, f"{state.name}.{kind}.jsonl")
            except Exception as exc:  # noqa: BLE001 - e.g. the file expired: its lines count as missing
                logger.error("%s: cannot read the %s file of batch %s: %s", self.id, kind, state.batch_id, exc)
                continue
            for lineno, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    cid = record["custom_id"]
                except (ValueError, KeyError, TypeError):
                    logger.error(
                        "%s: batch %s %s line %d is unreadable: %.200s", self.id, state.batch_id, kind, lineno, line
                    )
                    continue
                if cid not in by_id or isinstance(results.get(cid), list):
                    continue  # not asked for now, or a duplicate line after a success
                results[cid] = self._line_result(record, requests[by_id[cid][0]])
        missing = missing_error(state)
        return {cid: results.get(cid, missing) for cid in state.custom_ids if cid in by_id}

    def _line_result(self, record: dict[str, Any], req: GenerationRequest) -> Result:
        response = record.get("response") or {}
        error = record.get("error")
        status = response.get("status_code")
        if error or status != 200:
            body_error = (response.get("body") or {}).get("error") if isinstance(response.get("body"), dict) else None
            detail = error or body_error or {}
            code = detail.get("code") or detail.get("type") or (f"HTTP{status}" if status else "BatchLineError")
            return TeacherError(f"batch line failed: {detail.get('message') or detail}", error_type=str(code))
        try:
            gens = parse_response(
                response.get("body"), chat=req.messages is not None, stop=req.stop if self.reasoning else None
            )
        except MalformedResponseError as exc:
            return TeacherError(f"{type(exc).__name__}: {exc}", error_type="MalformedResponseError")
        if len(gens) < req.n:
            return TeacherError(f"got {len(gens)} of {req.n} samples", error_type="IncompleteResponse")
        return gens[: req.n]


def _admit(order: list[str], by_id: dict[str, list[int]], admit: Callable[[int], bool] | None) -> set[int]:
    """Indices the engine admits (its budget), asked in ``order``; the first refusal stops all further ones."""
    admitted: set[int] = set()
    for cid in order:
        for i in by_id[cid]:
            if admit is not None and not admit(i):
                return admitted
            admitted.add(i)
    return admitted


def _maybe_created(exc: BaseException) -> bool:
    """A ``batches.create`` failure after which the batch may exist all the same (no answer received)."""
    return isinstance(exc, openai.APIConnectionError) or (
        isinstance(exc, openai.APIStatusError) and exc.status_code >= 500
    )


__all__ = ["BatchState", "BatchStore", "OpenAIBatchTeacher", "custom_id"]
