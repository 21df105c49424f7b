"""A priced in-process teacher that records every request and answers ``answer.format(j=sample_index)``."""

from __future__ import annotations

from toolkit.teachers.base import Generation, Teacher, Usage


class RecordingTeacher(Teacher):
    """Answers each request's ``n`` samples at once with a fixed usage (priced, so cost is visible)."""

    id = "fake:recording"
    price_per_mtok = (1.0, 2.0)

    def __init__(self, answer: str = "c{j}"):
        self.answer = answer
        self.requests: list = []

    def generate_each(self, requests, on_result, admit=None):
        for i, req in enumerate(requests):
            self.requests.append(req)
            on_result(i, [Generation(self.answer.format(j=j), usage=Usage(100, 10)) for j in range(req.n)])
