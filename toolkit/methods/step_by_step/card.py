"""Distilling step-by-step model card: what the method is, the paper to cite, the lineage of the rationales learned."""

from __future__ import annotations

from toolkit.publishing.lineage import Lineage

DESCRIPTION = (
    "Distilling step-by-step (Hsieh et al. 2023): the student learns the teacher's labels and, as a second task "
    "with its own input prefix, the teacher's rationales; loss = a·label + (1-a)·rationale. Only the label task "
    "runs at inference."
)
CITATION = """@inproceedings{hsieh-etal-2023-distilling,
  title = {Distilling Step-by-Step! Outperforming Larger Language Models with Less Training Data and Smaller
           Model Sizes},
  author = {Hsieh, Cheng-Yu and Li, Chun-Liang and Yeh, Chih-Kuan and Nakhost, Hootan and Fujii, Yasuhisa and
            Ratner, Alexander and Krishna, Ranjay and Lee, Chen-Yu and Pfister, Tomas},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2023},
  year = {2023}
}"""

# The model card's task tag per dataset.
CARD_TASKS = {"cqa": "qa", "svamp": "math", "anli1": "nli", "esnli": "nli"}

__all__ = ["CARD_TASKS", "CITATION", "DESCRIPTION", "card_lineage"]


def card_lineage(lineage: dict, report: dict, train_source: str, base_model: str) -> Lineage:
    """The model card's lineage: teacher, template hash, sampling, the train pool's parse rate, what was excluded."""
    teacher = report["teacher_train"]
    return Lineage(
        teacher_id=", ".join(lineage["teacher_id"]) or None,
        template_hash=", ".join(lineage["template_hash"]) or None,
        generated_dataset=train_source,
        base_model=base_model,
        extra={
            "sampling": ", ".join(lineage["sampling"]) or None,
            "teacher_parse_rate (train pool)": teacher["parse_rate"],
            "teacher_accuracy_vs_gold (parsed train rows)": teacher["teacher_accuracy_parsed"],
            "excluded_from_training": report["train_exclusions"],
        },
    )
