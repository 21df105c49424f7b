"""k few-shot candidates per input for LMCor: one greedy + (k-1) samples at a temperature.

    python data_gen/candidates.py --config data_gen/configs/jfleg_smollm2.yaml [--max_items 20] [--dry_run]

Inputs come from ``toolkit.tasks.load(dataset, split)`` or a local file; demonstrations from another split
(``demo_split``; JFLEG has only dev, so ``resplit_from: dev`` splits it deterministically first). Output rows
keep the input columns and add ``candidates``, ``candidate_kinds`` (greedy/sample), ``sample_indices`` and
the lineage columns ``teacher_id``, ``template_hash``, ``sampling`` (JSON), ``usage`` (JSON). Candidates are
stripped of surrounding whitespace (the LMCor seed code kept trailing newlines, a known bug).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `data_gen` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_gen.common import (  # noqa: E402
    JobConfig,
    PromptConfig,
    choose_demos,
    demos_for,
    init_logging,
    load_inputs,
    load_split,
    maybe_push,
    merge_shards,
    shard,
)
from toolkit.runtime import configure_threads
from toolkit.teachers.base import GenerationRequest, TeacherConfig, usage_json  # noqa: E402

logger = logging.getLogger("data_gen.candidates")


@dataclass
class CandidatesConfig:
    """LMCor candidate settings."""

    num_candidates: int = field(default=4, metadata={"help": "k candidates per input (greedy + k-1 samples)."})
    include_greedy: bool = field(default=True, metadata={"help": "Make the first candidate the greedy output."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of the non-greedy candidates."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus mass of the sampled candidates."})
    target_column: str = field(
        default="references", metadata={"help": "Demo answer column ({target} in templates); lists use item 0."}
    )
    first_line: bool = field(default=True, metadata={"help": "Keep only the first line of each candidate."})

    def __post_init__(self) -> None:
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")
        if self.temperature <= 0 and self.num_candidates > int(self.include_greedy):
            raise ValueError("sampled candidates need temperature > 0")


def make_parser():
    from toolkit.configs import make_parser as _make_parser

    return _make_parser([TeacherConfig, JobConfig, PromptConfig, CandidatesConfig])


def _with_target(row: dict[str, Any], column: str) -> dict[str, Any]:
    if column not in row:
        return row
    value = row[column]
    return {**row, "target": value[0] if isinstance(value, (list, tuple)) and value else value}


def build_requests(row, demos, prompt: PromptConfig, cand: CandidatesConfig, job: JobConfig):
    """The (greedy, sampled) requests of one input row and the kind of each candidate."""
    template = prompt.template()
    content = template.build(demos_for(row, demos, prompt.num_demos, job.id_column), row)
    common = {"max_tokens": prompt.max_tokens, "stop": prompt.stops(), "seed": prompt.seed}
    requests, kinds = [], []
    n_samples = cand.num_candidates - int(cand.include_greedy)
    if cand.include_greedy:
        requests.append(GenerationRequest(**content, n=1, temperature=0.0, top_p=1.0, **common))
        kinds.append("greedy")
    if n_samples:
        requests.append(
            GenerationRequest(**content, n=n_samples, temperature=cand.temperature, top_p=cand.top_p, **common)
        )
        kinds += ["sample"] * n_samples
    return requests, kinds


def main(teacher_cfg: TeacherConfig, job: JobConfig, prompt: PromptConfig, cand: CandidatesConfig) -> dict[str, Any]:
    """Run the job; returns the summary dict (also written to ``summary.json``)."""
    from data_gen import common as jobs

    card = {
        "name": f"LMCor candidates ({job.dataset or job.input_file})",
        "description": (
            f"{cand.num_candidates} teacher candidates per input (greedy first when `candidate_kinds` says so) for "
            "training an LMCor corrector. Generated with distill-toolkit `data_gen/candidates.py`."
        ),
        "license": job.card_license,
        "source_datasets": [job.dataset] if job.dataset else None,
    }
    if job.merge:
        out = merge_shards(job.output_dir, card=card)
        maybe_push(job, out)
        return json.loads((out / "summary.json").read_text())
    rows = shard(load_inputs(job), job.num_shards, job.shard_index)
    demo_pool = load_split(job, prompt.demo_split) if prompt.num_demos > 0 else []
    demo_pool = [_with_target(d, cand.target_column) for d in demo_pool]
    demos, t_hash = choose_demos(prompt, demo_pool, job.id_column) if demo_pool else ([], None)
    if t_hash is None:
        from toolkit.prompts import template_hash

        t_hash = template_hash(prompt.template())
    built = [build_requests(row, demos, prompt, cand, job) for row in rows]
    items = [jobs_item(str(row[job.id_column]), reqs) for row, (reqs, _) in zip(rows, built)]
    sampling = {
        "greedy": {"temperature": 0.0, "max_tokens": prompt.max_tokens} if cand.include_greedy else None,
        "sample": {"temperature": cand.temperature, "top_p": cand.top_p, "max_tokens": prompt.max_tokens},
        "stop": prompt.stops(),
        "seed": prompt.seed,
        "num_candidates": cand.num_candidates,
    }

    def to_row(row, outcome, teacher) -> dict[str, Any]:
        template = prompt.template()
        gens = [g for per_req in outcome.generations for g in per_req]
        idx = [i for per_req in outcome.generations for i in range(len(per_req))]
        return {
            **row,
            "candidates": [template.clean_output(g.text, first_line=cand.first_line) for g in gens],
            "candidate_kinds": (["greedy"] if cand.include_greedy else [])
            + ["sample"] * (cand.num_candidates - int(cand.include_greedy)),
            "sample_indices": idx,
            "finish_reasons": [g.finish_reason or "" for g in gens],
            "teacher_id": teacher.id,
            "template_hash": t_hash,
            "sampling": json.dumps(sampling, sort_keys=True),
            "usage": usage_json(outcome.usage, teacher.cost(outcome.usage)),
        }

    def stats(out_rows) -> dict[str, Any]:
        cands = [c for r in out_rows for c in r["candidates"]]
        return {
            "empty_candidates": sum(not c for c in cands),
            "mean_distinct_candidates": round(
                sum(len(set(r["candidates"])) for r in out_rows) / max(1, len(out_rows)), 3
            ),
        }

    return jobs.run_job(
        "candidates", teacher_cfg, job, rows, items, to_row, stats, card=card,
        configs={"teacher": teacher_cfg, "job": job, "prompt": prompt, "candidates": cand},
        dry_run_show=lambda i: items[i].requests[0],
    )  # fmt: skip


def jobs_item(item_id: str, requests: list[GenerationRequest]):
    from toolkit.generation import WorkItem

    return WorkItem(item_id, requests)


if __name__ == "__main__":
    init_logging()
    configure_threads()  # the local hf teacher decodes on every core
    summary = main(*make_parser().parse_args_and_config())
    sys.exit(0 if not summary.get("aborted") else 2)


__all__ = ["CandidatesConfig", "build_requests", "main", "make_parser"]
