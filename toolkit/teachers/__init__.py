"""Teacher backends behind one protocol (:class:`toolkit.teachers.base.Teacher`).

``load_teacher(config)`` builds the backend named by ``config.backend``: ``openai`` (OpenAI API or any
OpenAI-compatible server; ``mode="batch"`` uses the OpenAI Batch API), ``hf`` (a local transformers model) or
``vllm`` (offline vLLM engine, an optional extra imported only when that backend is built).
"""

from __future__ import annotations

from toolkit.teachers.base import Generation, GenerationRequest, Teacher, TeacherError, Usage, teacher_id
from toolkit.teachers.config import BACKENDS, TeacherConfig
from toolkit.teachers.hf import HFTeacher
from toolkit.teachers.openai import OpenAITeacher
from toolkit.teachers.openai_batch import OpenAIBatchTeacher
from toolkit.teachers.vllm import VLLMTeacher

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
        return OpenAIBatchTeacher(config)
    if config.backend == "openai":
        return OpenAITeacher(config)
    if config.backend == "hf":
        return HFTeacher(config)
    if config.backend == "vllm":
        return VLLMTeacher(config)
    raise ValueError(f"unknown teacher backend {config.backend!r}; expected one of {BACKENDS}")
