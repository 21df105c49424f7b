"""The rationales job: few-shot chain-of-thought rationales + labels (Distilling step-by-step), or a PaLM import.

    python data_gen/rationales.py --config data_gen/configs/svamp_smollm2.yaml [--max_items 20] [--dry_run]
    python data_gen/rationales.py --config data_gen/configs/palm_cqa.yaml        # import PaLM-540B outputs
    python data_gen/rationales.py --import_palm svamp --split train --output_dir outputs/data_gen/palm_svamp

Completions are parsed by the task (``toolkit.tasks.palm.parse_completion``: answer phrase, CQA label set,
SVAMP arithmetic). A completion that does not parse is kept as an explicit failure (``parse_ok=False``,
``teacher_label=None``), never an empty label; the summary reports the parse rate and the teacher-label
accuracy against gold. Demonstrations default to correct PaLM rationales from the task's train split.

Reasoning teachers (R1-style, served by ``vllm serve --reasoning-parser ...``) return their trace as
``reasoning_content``: every row keeps it in a ``reasoning_content`` column, and ``rationale_source="reasoning"``
makes it the row's rationale (the label is still read from the answer).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.generation.items import WorkItem
from toolkit.generation.jobs import (
    ROW_INDEX,
    JobConfig,
    PromptConfig,
    choose_demos,
    demos_for,
    load_inputs,
    load_split,
    maybe_push,
    merge_shards,
    run_job,
    shard,
    write_outputs,
)
from toolkit.tasks.math import numbers_match
from toolkit.tasks.palm import PALM_TASKS, format_input, load_palm, parse_completion
from toolkit.teachers.base import GenerationRequest, usage_json
from toolkit.teachers.config import TeacherConfig

logger = logging.getLogger("data_gen.rationales")

PALM_TEACHER_ID = "palm-540b (imported)"
RATIONALE_SOURCES = ("answer", "reasoning")


@dataclass
class RationalesConfig:
    """Chain-of-thought settings."""

    task: str = field(default="svamp", metadata={"help": "Parser/label set: cqa, svamp, anli1 or esnli."})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy rationale (the paper's setting)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus mass when sampling."})
    label_column: str = field(default="label", metadata={"help": "Gold label column for teacher accuracy."})
    demo_dataset: str | None = field(
        default=None, metadata={"help": "Where demos come from (default palm_<task>: PaLM rationales)."}
    )
    demo_only_correct: bool = field(default=True, metadata={"help": "Use only demos whose rationale label is gold."})
    import_palm: str | None = field(
        default=None, metadata={"help": "Import the PaLM-540B completions of this task (split = --split) instead."}
    )
    rationale_source: str = field(
        default="answer",
        metadata={
            "help": "Where the rationale comes from: 'answer' (the text before the answer phrase of the completion) "
            "or 'reasoning' (a reasoning model's `reasoning_content` trace; the label is still read from the "
            "answer). A row whose teacher returned no trace then counts as a parse failure."
        },
    )

    def __post_init__(self) -> None:
        for name in (self.task, self.import_palm):
            if name is not None and name not in PALM_TASKS:
                raise ValueError(f"task must be one of {PALM_TASKS}, got {name!r}")
        if self.rationale_source not in RATIONALE_SOURCES:
            raise ValueError(f"rationale_source must be one of {RATIONALE_SOURCES}, got {self.rationale_source!r}")


def labels_match(task: str, predicted: str | None, gold: Any) -> bool:
    """Teacher label vs gold: numeric tolerance for SVAMP, case-insensitive text otherwise."""
    if predicted is None or gold is None:
        return False
    if task == "svamp":
        return numbers_match(predicted, str(gold))
    return str(predicted).strip().lower() == str(gold).strip().lower()


def parse_stats(task: str, rows: list[dict[str, Any]], label_column: str) -> dict[str, Any]:
    """Parse rate and teacher-label accuracy (all rows; failures count as wrong) plus accuracy on parsed rows."""
    n = len(rows)
    ok = [r for r in rows if r["parse_ok"]]
    correct = sum(labels_match(task, r["teacher_label"], r.get(label_column)) for r in ok)
    return {
        "rows": n,
        "parse_ok": len(ok),
        "parse_failures": n - len(ok),
        "parse_rate": round(len(ok) / n, 4) if n else 0.0,
        "teacher_accuracy": round(correct / n, 4) if n else 0.0,
        "teacher_accuracy_parsed": round(correct / len(ok), 4) if ok else 0.0,
    }


def _context(task: str, row: dict[str, Any]) -> dict[str, Any]:
    """Template fields: the row plus ``task_input`` (the task's standard input text, e.g. CQA with choices)."""
    try:
        task_input = row["input"] if "input" in row else format_input(task, row)
    except KeyError as exc:
        raise ValueError(f"{task} rows need column {exc} to build the input (have {sorted(row)})") from exc
    return {**row, "task_input": task_input}


def import_palm(job: JobConfig, rat: RationalesConfig) -> dict[str, Any]:
    """PaLM-540B completions of ``rat.import_palm`` / ``job.split`` → the rationales dataset format."""
    task = rat.import_palm
    ds = load_palm(task, job.split, data_dir=job.data_dir)
    rows = [dict(r) for r in ds][: job.max_items]
    sampling = json.dumps({"source": "distill_step_by_step_palm", "note": "imported; sampling unknown"})
    for i, row in enumerate(rows):
        row.update(
            {
                ROW_INDEX: i,
                "teacher_id": PALM_TEACHER_ID,
                "template_hash": None,
                "sampling": sampling,
                "usage": json.dumps({"num_calls": 0}),
                "sample_index": 0,
            }
        )
    summary = {"task": task, "split": job.split, "teacher_id": PALM_TEACHER_ID, **parse_stats(task, rows, "label")}
    card = {
        "name": f"PaLM-540B rationales: {task} {job.split} (imported)",
        "description": "PaLM-540B chain-of-thought completions from Distilling step-by-step, parsed by distill-toolkit.",
        "license": job.card_license,
        "source_datasets": [f"distill_step_by_step_palm/{task}"],
    }
    out = Path(job.output_dir)
    write_outputs(out, rows, failures=[], summary=summary, configs={"job": job, "rationales": rat}, card=card)
    maybe_push(job, out)
    logger.info("imported %d PaLM %s/%s rows into %s: %s", len(rows), task, job.split, out, summary)
    print(json.dumps(summary, indent=2))
    return summary


def load_demos(job: JobConfig, prompt: PromptConfig, rat: RationalesConfig) -> list[dict[str, Any]]:
    """Demo pool with ``rationale`` + ``teacher_label`` columns (PaLM rationales of the task by default)."""
    if prompt.num_demos == 0:
        return []
    name = rat.demo_dataset or f"palm_{rat.task}"
    pool = [_context(rat.task, r) for r in load_split(job, prompt.demo_split, dataset=name)]
    if rat.demo_only_correct and pool and "parse_ok" in pool[0]:
        pool = [r for r in pool if r["parse_ok"] and labels_match(rat.task, r["teacher_label"], r.get("label"))]
    return pool


def rationales_job(
    teacher_cfg: TeacherConfig, job: JobConfig, prompt: PromptConfig, rat: RationalesConfig
) -> dict[str, Any]:
    """Run the job (or the PaLM import); returns the summary dict (also written to ``summary.json``)."""
    if rat.import_palm:
        return import_palm(job, rat)
    card = {
        "name": f"Chain-of-thought rationales ({rat.task}, {job.dataset or job.input_file})",
        "description": (
            "Teacher rationales and labels for Distilling step-by-step, generated with distill-toolkit "
            "`data_gen/rationales.py`. Rows with `parse_ok=False` kept the raw completion but have no label."
        ),
        "license": job.card_license,
        "source_datasets": [job.dataset] if job.dataset else None,
    }
    if job.merge:
        out = merge_shards(job.output_dir, card=card)
        maybe_push(job, out)
        return json.loads((out / "summary.json").read_text())
    rows = shard(load_inputs(job), job.num_shards, job.shard_index)
    demos, t_hash = choose_demos(prompt, load_demos(job, prompt, rat), job.id_column)
    template = prompt.template()
    common = {"max_tokens": prompt.max_tokens, "stop": prompt.stops(), "seed": prompt.seed, **prompt.request_options()}
    items = []
    for row in rows:
        content = template.build(demos_for(row, demos, prompt.num_demos, job.id_column), _context(rat.task, row))
        req = GenerationRequest(**content, n=1, temperature=rat.temperature, top_p=rat.top_p, **common)
        items.append(WorkItem(str(row[job.id_column]), [req]))
    sampling = json.dumps(
        {"temperature": rat.temperature, "top_p": rat.top_p, **common, "n": 1}, sort_keys=True, default=str
    )

    def to_row(row, outcome, teacher) -> dict[str, Any]:
        gen = outcome.generations[0][0]
        raw = template.clean_output(gen.text) if template.prompt_format == "chat" else gen.text
        rationale, label = parse_completion(rat.task, raw, row.get("choices"))
        trace_missing = False
        if rat.rationale_source == "reasoning":
            rationale = (gen.reasoning_content or "").strip()
            trace_missing = not rationale  # a rationale row without a rationale is a failure, never silent
        return {
            **row,
            "rationale": rationale,
            "teacher_label": label,
            "parse_ok": label is not None and not trace_missing,
            "teacher_completion": gen.text,
            "reasoning_content": gen.reasoning_content,
            "sample_index": 0,
            "teacher_id": teacher.id,
            "template_hash": t_hash,
            "sampling": sampling,
            "usage": usage_json(outcome.usage, teacher.cost(outcome.usage)),
        }

    return run_job(
        "rationales",
        teacher_cfg,
        job,
        rows,
        items,
        to_row,
        lambda out_rows: parse_stats(rat.task, out_rows, rat.label_column),
        card=card,
        configs={"teacher": teacher_cfg, "job": job, "prompt": prompt, "rationales": rat},
        dry_run_show=lambda i: items[i].requests[0],
    )


__all__ = [
    "PALM_TEACHER_ID",
    "RATIONALE_SOURCES",
    "RationalesConfig",
    "import_palm",
    "labels_match",
    "parse_stats",
    "rationales_job",
]
