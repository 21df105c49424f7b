"""Teacher backends behind one protocol (:class:`toolkit.teachers.base.Teacher`).

``load_teacher(config)`` builds the backend named by ``config.backend``: ``openai`` (OpenAI API or any
OpenAI-compatible server; ``mode="batch"`` uses the OpenAI Batch API), ``hf`` (a local transformers model) or
``vllm`` (offline vLLM engine, optional extra).
Backends import their heavy dependencies lazily, so importing this package stays cheap.
"""

from __future__ import annotations

from toolkit.teachers.base import (
    BACKENDS,
    Generation,
    GenerationRequest,
    Teacher,
    TeacherConfig,
    TeacherError,
    Usage,
    teacher_id,
)

__all__ = [
    "BACKENDS",
    "Generation",
    "GenerationRequest",
    "Teacher",
    "TeacherConfig",
    "TeacherError",
    "Usage",
    "load_teacher",
    "teacher_id",
]


def load_teacher(config: TeacherConfig | dict) -> Teacher:
    """Instantiate the teacher described by ``config`` (a :class:`TeacherConfig` or a dict of its fields)."""
    if isinstance(config, dict):
        config = TeacherConfig(**config)
    if config.backend == "openai" and config.mode == "batch":
        from toolkit.teachers.openai_batch import OpenAIBatchTeacher

        return OpenAIBatchTeacher(config)
    if config.backend == "openai":
        from toolkit.teachers.openai import OpenAITeacher

        return OpenAITeacher(config)
    if config.backend == "hf":
        from toolkit.teachers.hf import HFTeacher

        return HFTeacher(config)
    if config.backend == "vllm":
        from toolkit.teachers.vllm import VLLMTeacher

        return VLLMTeacher(config)
    raise ValueError(f"unknown teacher backend {config.backend!r}; expected one of {BACKENDS}")
