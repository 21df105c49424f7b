"""k few-shot candidates per input for LMCor: one greedy + (k-1) samples at a temperature.

    python data_gen/candidates.py --config data_gen/configs/jfleg_smollm2.yaml [--max_items 20] [--dry_run]

Inputs come from ``toolkit.tasks.load(dataset, split)`` or a local file; demonstrations from another split
(``demo_split``; JFLEG has only dev, so ``resplit_from: dev`` splits it deterministically first). The job is
:func:`toolkit.generation.candidates.candidates_job`, the same requests the LMCor recipe sends (shared cache).
"""

from __future__ import annotations

import sys

from toolkit import configs
from toolkit.generation.candidates import CandidatesConfig, candidates_job
from toolkit.generation.jobs import JobConfig, PromptConfig, init_logging
from toolkit.runtime import configure_threads
from toolkit.teachers.config import TeacherConfig


def make_parser():
    """``--config`` YAML + flags of the teacher, the job, the prompt and the candidates."""
    return configs.make_parser([TeacherConfig, JobConfig, PromptConfig, CandidatesConfig])


def main(teacher: TeacherConfig, job: JobConfig, prompt: PromptConfig, cand: CandidatesConfig) -> dict:
    """Run the job (the parsed configs of :func:`make_parser`); returns its summary."""
    return candidates_job(teacher, job, prompt, cand)


if __name__ == "__main__":
    init_logging()
    configure_threads()  # the local hf teacher decodes on every core
    summary = main(*make_parser().parse_args_and_config())
    sys.exit(0 if not summary.get("aborted") else 2)
