"""Few-shot chain-of-thought rationales + labels per input (Distilling step-by-step), or a PaLM import.

    python data_gen/rationales.py --config data_gen/configs/svamp_smollm2.yaml [--max_items 20] [--dry_run]
    python data_gen/rationales.py --config data_gen/configs/palm_cqa.yaml        # import PaLM-540B outputs
    python data_gen/rationales.py --import_palm svamp --split train --output_dir outputs/data_gen/palm_svamp
    python data_gen/rationales.py --config ... --model deepseek-r1 --prompt_format chat --rationale_source reasoning

The job is :func:`toolkit.generation.rationales.rationales_job` (parsing, explicit failures, teacher accuracy).
"""

from __future__ import annotations

import sys

from toolkit import configs
from toolkit.generation.jobs import JobConfig, PromptConfig, init_logging
from toolkit.generation.rationales import RationalesConfig, rationales_job
from toolkit.runtime import configure_threads
from toolkit.teachers.config import TeacherConfig


def make_parser():
    """``--config`` YAML + flags of the teacher, the job, the prompt and the rationales."""
    return configs.make_parser([TeacherConfig, JobConfig, PromptConfig, RationalesConfig])


def main(teacher: TeacherConfig, job: JobConfig, prompt: PromptConfig, rat: RationalesConfig) -> dict:
    """Run the job (the parsed configs of :func:`make_parser`); returns its summary."""
    return rationales_job(teacher, job, prompt, rat)


if __name__ == "__main__":
    init_logging()
    configure_threads()  # the local hf teacher decodes on every core
    summary = main(*make_parser().parse_args_and_config())
    sys.exit(0 if not summary.get("aborted") else 2)
