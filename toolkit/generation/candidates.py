"""The candidates job: k few-shot candidates per input for LMCor, one greedy + (k-1) samples at a temperature.

One definition of the requests and of the output rows, used by ``data_gen/candidates.py`` (:func:`candidates_job`,
which writes a dataset) and by the LMCor recipe (:func:`generate_candidates`, which returns the rows): the same
rows, demonstrations, prompt and teacher give the same cache keys, so whichever runs second pays for nothing.

Output rows keep the input columns and add ``candidates``, ``candidate_kinds`` (greedy/sample),
``sample_indices``, ``finish_reasons`` and the lineage columns ``teacher_id``, ``template_hash``, ``sampling``
(JSON) and ``usage`` (JSON: tokens, ``cost_usd`` and ``num_calls``, the requests behind the row). Candidates are
stripped of surrounding whitespace (the LMCor seed code kept trailing newlines, a known bug).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolkit.generation.items import WorkItem
from toolkit.generation.jobs import (
    JobConfig,
    PromptConfig,
    choose_demos,
    demos_for,
    generate_rows,
    load_inputs,
    load_split,
    maybe_push,
    merge_shards,
    run_job,
    shard,
)
from toolkit.generation.prompts import template_hash
from toolkit.teachers.base import GenerationRequest, Usage
from toolkit.teachers.config import TeacherConfig

__all__ = ["CandidatesConfig", "build_requests", "candidate_items", "candidates_job", "generate_candidates"]


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


def with_target(row: dict[str, Any], column: str) -> dict[str, Any]:
    """The demo with ``target`` = its ``column`` (the first item of a list, whitespace-normalised)."""
    if column not in row:
        return row
    value = row[column]
    value = value[0] if isinstance(value, (list, tuple)) and value else value
    return {**row, "target": " ".join(value.split()) if isinstance(value, str) else value}


def build_requests(row, demos, prompt: PromptConfig, cand: CandidatesConfig, id_column: str = "id"):
    """The (greedy, sampled) requests of one input row and the kind of each candidate.

    The greedy request carries no seed (greedy decoding ignores it), so it shares its cache entry with any greedy
    request for the same prompt.
    """
    content = prompt.template().build(demos_for(row, demos, prompt.num_demos, id_column), row)
    common = {"max_tokens": prompt.max_tokens, "stop": prompt.stops(), **prompt.request_options()}
    requests, kinds = [], []
    n_samples = cand.num_candidates - int(cand.include_greedy)
    if cand.include_greedy:
        requests.append(GenerationRequest(**content, n=1, temperature=0.0, top_p=1.0, **common))
        kinds.append("greedy")
    if n_samples:
        requests.append(
            GenerationRequest(
                **content, n=n_samples, temperature=cand.temperature, top_p=cand.top_p, seed=prompt.seed, **common
            )
        )
        kinds += ["sample"] * n_samples
    return requests, kinds


def candidate_items(
    rows: Sequence[dict[str, Any]],
    demo_pool: Sequence[dict[str, Any]],
    prompt: PromptConfig,
    cand: CandidatesConfig,
    id_column: str = "id",
) -> tuple[list[WorkItem], Callable[[dict[str, Any], Any, Any], dict[str, Any]]]:
    """One work item per row and the function that turns a completed item into its output row.

    Demonstrations are ``prompt.num_demos`` rows of ``demo_pool`` (``prompt.demo_selection``) plus one spare that
    replaces a row's own demonstration; the template hash names the first ``num_demos``.
    """
    demo_pool = [with_target(d, cand.target_column) for d in demo_pool] if prompt.num_demos > 0 else []
    demos, t_hash = choose_demos(prompt, demo_pool, id_column) if demo_pool else ([], None)
    t_hash = t_hash or template_hash(prompt.template())
    items = [WorkItem(str(row[id_column]), build_requests(row, demos, prompt, cand, id_column)[0]) for row in rows]
    template = prompt.template()
    kinds = (["greedy"] if cand.include_greedy else []) + ["sample"] * (cand.num_candidates - int(cand.include_greedy))
    sampling = json.dumps(
        {
            "greedy": {"temperature": 0.0, "max_tokens": prompt.max_tokens} if cand.include_greedy else None,
            "sample": {"temperature": cand.temperature, "top_p": cand.top_p, "max_tokens": prompt.max_tokens},
            "stop": prompt.stops(),
            "seed": prompt.seed,
            "num_candidates": cand.num_candidates,
            **prompt.request_options(),
        },
        sort_keys=True,
    )

    def to_row(row: dict[str, Any], outcome, teacher) -> dict[str, Any]:
        gens = [g for per_req in outcome.generations for g in per_req]
        usage: Usage = outcome.usage
        return {
            **row,
            "candidates": [template.clean_output(g.text, first_line=cand.first_line) for g in gens],
            "candidate_kinds": list(kinds),
            "sample_indices": [i for per_req in outcome.generations for i in range(len(per_req))],
            "finish_reasons": [g.finish_reason or "" for g in gens],
            "reasoning_contents": [g.reasoning_content for g in gens],
            "teacher_id": teacher.id,
            "template_hash": t_hash,
            "sampling": sampling,
            "usage": json.dumps(
                {**usage.to_dict(), "cost_usd": round(teacher.cost(usage), 8), "num_calls": len(outcome.generations)},
                sort_keys=True,
            ),
        }

    return items, to_row


def generate_candidates(
    rows: Sequence[dict[str, Any]],
    demo_pool: Sequence[dict[str, Any]],
    teacher_cfg: TeacherConfig,
    prompt: PromptConfig,
    cand: CandidatesConfig,
    *,
    id_column: str = "id",
    cache_path: str | None = None,
    max_cost: float | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The job's candidates for ``rows`` without writing a dataset: ``(output rows, failures, summary)``."""
    items, to_row = candidate_items(rows, demo_pool, prompt, cand, id_column)
    return generate_rows(
        "teacher candidates", teacher_cfg, rows, items, to_row, cache_path=cache_path, max_cost=max_cost
    )


def _stats(out_rows) -> dict[str, Any]:
    cands = [c for r in out_rows for c in r["candidates"]]
    mean = sum(len(set(r["candidates"])) for r in out_rows) / max(1, len(out_rows))
    return {"empty_candidates": sum(not c for c in cands), "mean_distinct_candidates": round(mean, 3)}


def candidates_job(teacher_cfg: TeacherConfig, job: JobConfig, prompt: PromptConfig, cand: CandidatesConfig):
    """Run the job (``data_gen/candidates.py``); returns the summary dict (also written to ``summary.json``)."""
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
    items, to_row = candidate_items(rows, demo_pool, prompt, cand, job.id_column)
    return run_job(
        "candidates",
        teacher_cfg,
        job,
        rows,
        items,
        to_row,
        _stats,
        card=card,
        configs={"teacher": teacher_cfg, "job": job, "prompt": prompt, "candidates": cand},
        dry_run_show=lambda i: items[i].requests[0],
    )
