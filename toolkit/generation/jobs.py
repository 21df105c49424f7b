"""The data-generation jobs' shared parts: configs, inputs, sharding, demonstrations, and the generic run.

A job turns input rows into one :class:`~toolkit.generation.items.WorkItem` each, runs them through the cache
(:func:`generate_rows`, also what the LMCor recipe calls for its candidates) and writes the output folder
(:mod:`toolkit.generation.outputs`). The runnable scripts are ``data_gen/*.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit import tasks, teachers
from toolkit.configs import setup_logging
from toolkit.generation.cache import GenerationCache
from toolkit.generation.engine import plan_cost, run_generation
from toolkit.generation.items import BudgetExceededError, ItemOutcome, WorkItem
from toolkit.generation.outputs import ROW_INDEX, merge_shards, push_outputs, read_jsonl, write_outputs
from toolkit.generation.prompts import DEMO_SELECTIONS, PROMPT_FORMATS, FewShotTemplate, select_demos, template_hash

logger = logging.getLogger("data_gen")

__all__ = [
    "ROW_INDEX",
    "JobConfig",
    "PromptConfig",
    "choose_demos",
    "demos_for",
    "generate_rows",
    "init_logging",
    "load_inputs",
    "load_split",
    "maybe_push",
    "merge_shards",
    "parse_shard",
    "read_jsonl",
    "run_job",
    "shard",
    "write_outputs",
]


def json_option(name: str, value: dict | str | None) -> dict | None:
    """A dict option given as a dict (YAML) or a JSON object string (command line)."""
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"--{name} is not valid JSON: {value!r} ({exc})") from exc
    if not isinstance(parsed, dict):
        raise ValueError(f"--{name} must be a JSON object, got {value!r}")
    return parsed


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``, with a clear error for anything else."""
    index, slash, count = spec.partition("/")
    try:
        if not slash:
            raise ValueError
        return int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard takes 'i/n' (shard i of n, 0-based), got {spec!r}") from None


@dataclass
class JobConfig:
    """Where the inputs come from, where outputs go, and how the job runs."""

    dataset: str | None = field(
        default=None, metadata={"help": "toolkit.tasks registry name (jfleg, svamp, palm_cqa ...), file or Hub id."}
    )
    split: str | None = field(default="dev", metadata={"help": "Split of `dataset` to generate for."})
    input_file: str | None = field(default=None, metadata={"help": "Local JSONL/CSV/TSV/Parquet input instead."})
    data_dir: str | None = field(default=None, metadata={"help": "Real-data root (default $TOOLKIT_DATA_DIR)."})
    resplit_from: str | None = field(
        default=None,
        metadata={"help": "Split a dataset that lacks train/dev/test (JFLEG: 'dev') deterministically first."},
    )
    resplit_dev_size: float = field(default=0.15, metadata={"help": "dev rows (int or fraction) when resplitting."})
    resplit_test_size: float = field(default=0.15, metadata={"help": "test rows (int or fraction) when resplitting."})
    resplit_seed: int = field(default=42, metadata={"help": "Seed of the deterministic split."})
    id_column: str = field(default="id", metadata={"help": "Unique item id column (row position when absent)."})
    max_items: int | None = field(default=None, metadata={"help": "Use only the first N input rows."})
    output_dir: str = field(default="outputs/data_gen/job", metadata={"help": "Output folder."})
    cache_path: str | None = field(
        default=None, metadata={"help": "Generation cache SQLite file (default $TOOLKIT_CACHE/generations.sqlite)."}
    )
    num_shards: int = field(default=1, metadata={"help": "Split the inputs into this many contiguous shards."})
    shard_index: int = field(default=0, metadata={"help": "Which shard this worker runs (0-based)."})
    shard: str | None = field(
        default=None,
        metadata={"help": "'i/n': run shard i (0-based) of n; short for --shard_index i --num_shards n."},
    )
    merge: bool = field(default=False, metadata={"help": "Merge finished shards of output_dir instead of generating."})
    max_cost: float | None = field(
        default=None, metadata={"help": "Hard USD budget: abort if the estimate exceeds it, stop when reached."}
    )
    dry_run: bool = field(default=False, metadata={"help": "Print the first prompts and the estimate; call nothing."})
    dry_run_examples: int = field(default=2, metadata={"help": "Prompts shown by --dry_run."})
    progress: bool = field(default=True, metadata={"help": "Show a tqdm progress bar."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the output folder as a Hub dataset."})
    hub_repo_id: str | None = field(default=None, metadata={"help": "Hub dataset repo for --push_to_hub."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (default HF_TOKEN); never saved."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    card_license: str = field(default="other", metadata={"help": "License id in the dataset card metadata."})

    def __post_init__(self) -> None:
        if self.shard is not None:
            self.shard_index, self.num_shards = parse_shard(self.shard)
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"need 0 <= shard_index < num_shards, got {self.shard_index} / {self.num_shards}")
        if self.max_cost is not None and self.max_cost < 0:
            raise ValueError("max_cost must be >= 0")
        if self.push_to_hub and not self.hub_repo_id:
            raise ValueError("--push_to_hub needs --hub_repo_id")


@dataclass
class PromptConfig:
    """Few-shot template, demonstrations and shared sampling settings."""

    instruction: str = field(default="", metadata={"help": "Task description (system message in chat format)."})
    input_template: str = field(default="Input: {source}", metadata={"help": "str.format template of an input."})
    output_template: str = field(default="Output: {target}", metadata={"help": "Template of a demo answer."})
    separator: str = field(default="\n\n", metadata={"help": "Between examples (text format)."})
    joiner: str = field(default="\n", metadata={"help": "Between an example's input and output (text format)."})
    prompt_format: str = field(default="text", metadata={"help": f"One of {PROMPT_FORMATS}."})
    num_demos: int = field(default=4, metadata={"help": "Few-shot demonstrations per prompt."})
    demo_selection: str = field(default="fixed", metadata={"help": f"One of {DEMO_SELECTIONS}."})
    demo_seed: int = field(default=0, metadata={"help": "Seed of random demo selection."})
    demo_indices: list[int] | None = field(default=None, metadata={"help": "Explicit demo row indices."})
    demo_split: str | None = field(default="train", metadata={"help": "Split the demonstrations come from."})
    max_tokens: int = field(default=64, metadata={"help": "Completion length cap."})
    stop: list[str] | None = field(default=None, metadata={"help": "Stop sequences (default: next example)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    extra_body: dict | str | None = field(
        default=None,
        metadata={
            "help": "openai: extra JSON fields of every request (dict in YAML, JSON on the command line), e.g. "
            'vLLM\'s \'{"top_k": 20, "chat_template_kwargs": {"enable_thinking": true}}\'. Part of the cache key.'
        },
    )
    response_format: dict | str | None = field(
        default=None,
        metadata={"help": "openai: structured output: a JSON schema or a full `response_format` (dict or JSON)."},
    )
    top_logprobs: int | None = field(
        default=None, metadata={"help": "Keep the k most likely tokens at each position (0-20), stored in the cache."}
    )

    def __post_init__(self) -> None:
        self.request_options()  # malformed JSON fails here, before any row is loaded
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}")
        if self.demo_selection not in DEMO_SELECTIONS:
            raise ValueError(f"demo_selection must be one of {DEMO_SELECTIONS}, got {self.demo_selection!r}")

    def template(self) -> FewShotTemplate:
        return FewShotTemplate(
            instruction=self.instruction,
            input_template=self.input_template,
            output_template=self.output_template,
            separator=self.separator,
            joiner=self.joiner,
            prompt_format=self.prompt_format,
        )

    def request_options(self) -> dict[str, Any]:
        """The optional :class:`~toolkit.teachers.base.GenerationRequest` fields this job sets (none by default)."""
        options = {
            "extra_body": json_option("extra_body", self.extra_body),
            "response_format": json_option("response_format", self.response_format),
            "top_logprobs": self.top_logprobs,
        }
        return {name: value for name, value in options.items() if value is not None}

    def stops(self) -> list[str] | None:
        if self.stop:
            return list(self.stop)
        return self.template().default_stop() if self.prompt_format == "text" else None


# -- inputs ---------------------------------------------------------------------------------------------------
def split_size(value: float) -> int | float:
    """A resplit size: values >= 1 are row counts, smaller ones fractions."""
    return int(value) if value >= 1 else float(value)


def load_split(job: JobConfig, split: str | None, dataset: str | None = None) -> list[dict[str, Any]]:
    """Rows of ``split`` from ``job.dataset`` (or ``dataset``), resplitting deterministically if configured."""
    name = dataset or job.dataset
    if job.input_file and dataset is None:
        ds = tasks.load_local(job.input_file, split=split if split not in (None, "dev") else None)
    elif name is None:
        raise ValueError("set `dataset` (a toolkit.tasks name, file or Hub id) or `input_file`")
    elif job.resplit_from and dataset is None:
        whole = tasks.load(name, split=job.resplit_from, data_dir=job.data_dir)
        parts = tasks.deterministic_split(
            whole,
            dev_size=split_size(job.resplit_dev_size),
            test_size=split_size(job.resplit_test_size),
            seed=job.resplit_seed,
        )
        if split not in parts:
            raise ValueError(f"resplit gives train/dev/test, not {split!r}")
        ds = parts[split]
    else:
        ds = tasks.load(name, split=split, data_dir=job.data_dir)
    if hasattr(ds, "keys") and not hasattr(ds, "column_names"):  # a DatasetDict: no split was chosen
        raise ValueError(f"{name or job.input_file}: pick a split from {list(ds.keys())}")
    return [dict(row) for row in ds]


def load_inputs(job: JobConfig) -> list[dict[str, Any]]:
    """The job's input rows (``max_items``), each with ``row_index`` and a unique ``id`` column."""
    rows = load_split(job, job.split)
    if job.max_items is not None:
        rows = rows[: job.max_items]
    seen: set[str] = set()
    for i, row in enumerate(rows):
        row[ROW_INDEX] = i
        if job.id_column not in row:
            row[job.id_column] = f"{job.dataset or Path(job.input_file or 'input').stem}-{job.split}-{i}"
        key = str(row[job.id_column])
        if key in seen:
            raise ValueError(f"input row {i}: duplicate id {key!r} in column {job.id_column!r}")
        seen.add(key)
    return rows


def shard(rows: list[Any], num_shards: int, shard_index: int) -> list[Any]:
    """Contiguous shard ``shard_index`` of ``num_shards`` (sizes differ by at most one)."""
    base, extra = divmod(len(rows), num_shards)
    start = shard_index * base + min(shard_index, extra)
    return rows[start : start + base + (1 if shard_index < extra else 0)]


def choose_demos(prompt: PromptConfig, pool: list[dict[str, Any]], id_column: str, extra: int = 1):
    """``num_demos + extra`` demonstrations: the spare lets a row that is itself a demo get a different one."""
    k = min(prompt.num_demos + extra, len(pool))
    demos = select_demos(pool, k, method=prompt.demo_selection, seed=prompt.demo_seed, indices=prompt.demo_indices)
    return demos, template_hash(prompt.template(), demos[: prompt.num_demos])


def demos_for(row: dict[str, Any], demos: Sequence[dict[str, Any]], k: int, id_column: str) -> list[dict[str, Any]]:
    """The first ``k`` demos that are not ``row`` itself, by id or by source (no answer leakage into its prompt)."""
    rid, source = row.get(id_column), _norm(row.get("source"))
    return [
        d
        for d in demos
        if (rid is None or d.get(id_column) != rid) and (not source or _norm(d.get("source")) != source)
    ][:k]


def _norm(text: Any) -> str:
    return " ".join(text.split()) if isinstance(text, str) else ""


def job_output_dir(job: JobConfig) -> Path:
    root = Path(job.output_dir)
    if job.num_shards == 1:
        return root
    return root / "shards" / f"shard-{job.shard_index:05d}-of-{job.num_shards:05d}"


def maybe_push(job: JobConfig, out_dir: Path) -> str | None:
    if not job.push_to_hub:
        return None
    url = push_outputs(out_dir, job.hub_repo_id, token=job.hub_token, private=job.hub_private)
    logger.info("pushed %s to %s", out_dir, url)
    return url


def init_logging() -> None:
    setup_logging()
    # httpx logs every request at INFO: thousands of lines per job.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)


# -- the generic run ------------------------------------------------------------------------------------------
def _show_request(request) -> str:
    if request.prompt is not None:
        return request.prompt
    return "\n".join(f"[{m['role']}] {m['content']}" for m in request.messages)


def generate_rows(
    name: str,
    teacher_cfg: teachers.TeacherConfig,
    rows: Sequence[dict[str, Any]],
    items: Sequence[WorkItem],
    to_row: Callable[[dict[str, Any], ItemOutcome, Any], dict[str, Any]],
    *,
    cache_path: str | None = None,
    max_cost: float | None = None,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Generate ``items`` (one per row) through the cache: ``(output rows, failures, summary)``.

    Raises :class:`~toolkit.generation.items.BudgetExceededError` (nothing sent) when the estimate exceeds
    ``max_cost``. Rows whose item failed or was not sent are left out of the output rows.
    """
    teacher = teachers.load_teacher(teacher_cfg)
    try:
        with GenerationCache(cache_path) as cache:
            outcomes, summary = run_generation(items, teacher, cache, max_cost=max_cost, progress=progress, desc=name)
        out_rows, failures = [], []
        for row, outcome in zip(rows, outcomes):
            if outcome.ok:
                out_rows.append(to_row(row, outcome, teacher))
            elif outcome.error is not None:
                failures.append({**outcome.error, ROW_INDEX: row.get(ROW_INDEX)})
        return out_rows, failures, summary.to_dict()
    finally:
        teacher.close()


def run_job(
    name: str,
    teacher_cfg,
    job: JobConfig,
    rows: list[dict[str, Any]],
    items: list,
    to_row,
    stats,
    *,
    card: dict[str, Any],
    configs: dict[str, Any],
    dry_run_show,
) -> dict[str, Any]:
    """Generate ``items`` (one per row) through the cache (:func:`generate_rows`) and write the job's outputs.

    Args:
        to_row: ``(row, ItemOutcome, teacher) -> output row`` for completed items.
        stats: ``(output rows) -> dict`` of job-specific summary statistics.
        dry_run_show: ``i -> GenerationRequest`` whose prompt ``--dry_run`` prints.

    Returns:
        The summary dict; ``aborted`` is set when the pre-run estimate exceeded ``max_cost``.
    """
    out_dir = job_output_dir(job)
    if getattr(teacher_cfg, "mode", "online") == "batch" and teacher_cfg.batch_dir is None:
        # The batch ids live with the job's outputs (per shard), so re-running the job resumes its batches.
        teacher_cfg = dataclasses.replace(teacher_cfg, batch_dir=str(out_dir / "openai_batches"))
    if job.dry_run:
        teacher = teachers.load_teacher(teacher_cfg)
        try:
            with GenerationCache(job.cache_path) as cache:
                estimate = plan_cost(items, teacher, cache)
        finally:
            teacher.close()
        for i in range(min(job.dry_run_examples, len(items))):
            print(f"----- prompt {i} (item {items[i].item_id}) -----\n{_show_request(dry_run_show(i))}")
        print(f"----- dry run: nothing was sent -----\n{json.dumps(estimate, indent=2)}")
        return {"dry_run": True, **estimate}
    try:
        out_rows, failures, result = generate_rows(
            name,
            teacher_cfg,
            rows,
            items,
            to_row,
            cache_path=job.cache_path,
            max_cost=job.max_cost,
            progress=job.progress,
        )
    except BudgetExceededError as exc:
        logger.error("%s", exc)
        return {"aborted": "max_cost", "estimated_cost_usd": exc.estimate, "max_cost": exc.max_cost}
    result.update(stats(out_rows))
    result.update({"output_dir": str(out_dir), "rows_written": len(out_rows), "failures_file": "failures.jsonl"})
    write_outputs(out_dir, out_rows, failures=failures, summary=result, configs=configs, card=card)
    if job.num_shards == 1:
        maybe_push(job, out_dir)
    _print_summary(name, result)
    return result


def _print_summary(name: str, summary: dict[str, Any]) -> None:
    keys = [k for k, v in summary.items() if isinstance(v, (int, float, str)) and v is not None and k != "extra"]
    width = max(len(k) for k in keys)
    print(f"== {name} summary ==")
    for k in keys:
        print(f"  {k:<{width}}  {summary[k]}")
