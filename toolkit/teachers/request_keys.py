"""What identifies one sample of a request: the generation cache's keys and the Batch API's ``custom_id`` s.

Key = sha256 of (teacher id, exact messages/prompt, sampling parameters, sample index). The recipe lives beside
the request rather than in the cache, so a teacher (the Batch API one) can name its requests by their cache keys
without depending on the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from toolkit.teachers.base import GenerationRequest

KEY_VERSION = 1  # bump when the key recipe changes so old rows are simply never hit


def request_fingerprint(teacher_id: str, request: GenerationRequest) -> str:
    """Canonical JSON of everything that determines a request's output distribution (minus the sample index).

    ``n`` and ``sample_offset`` are deliberately excluded: a sample is identified by its index alone.
    """
    payload = {"v": KEY_VERSION, "teacher": teacher_id, **request.content(), "sampling": request.sampling()}
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def cache_key(teacher_id: str, request: GenerationRequest, sample_index: int) -> str:
    """sha256 hex digest identifying sample ``sample_index`` of ``request`` from ``teacher_id``."""
    return cache_keys(teacher_id, request, [sample_index])[0]


def cache_keys(teacher_id: str, request: GenerationRequest, sample_indices: Iterable[int]) -> list[str]:
    """:func:`cache_key` for several sample indices of one request (the fingerprint is built once)."""
    fingerprint = request_fingerprint(teacher_id, request).encode() + b"\x00"
    return [hashlib.sha256(fingerprint + str(int(index)).encode()).hexdigest() for index in sample_indices]
