"""Distilling step-by-step results tables of a plan: step-by-step vs standard with the same labels, data and seeds.

Per table: mean ± std test accuracy over seeds, the gain over standard and McNemar's exact test on the paired test
predictions pooled over seeds (:mod:`toolkit.methods.step_by_step.comparison`), the per-run rows, and the markdown.
Used by ``recipes/results_step_by_step.py`` (the plan's tables, from each finished run's JSON).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from toolkit.methods.step_by_step.comparison import pooled_mcnemar
from toolkit.publishing import reporting

BASE_MODE = "standard"

__all__ = [
    "BASE_MODE",
    "load_results",
    "per_run_rows",
    "render_plan_tables",
    "select",
    "summarize",
    "table_markdown",
]


def summarize(runs: list[dict], by: tuple[str, ...]) -> list[dict]:
    """One row per group of ``by`` (seeds pooled): mean ± std accuracy, cost, and McNemar vs standard."""
    rows = []
    keys = sorted({tuple(r[k] for k in by) for r in runs}, key=lambda k: tuple(str(x) for x in k))
    for key in keys:
        group = sorted((r for r in runs if tuple(r[k] for k in by) == key), key=lambda r: r["seed"])
        accs = [r["test_accuracy"] for r in group]
        row = dict(zip(by, key))
        row.update(
            seeds=",".join(str(r["seed"]) for r in group),
            n_train=group[0]["n_train"],
            steps=group[0]["global_steps"],
            train_tokens=round(statistics.fmean(r["train_tokens"] for r in group)),
            test_acc_mean=statistics.fmean(accs),
            test_acc_std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
        )
        row.update({"Δ vs standard": None, "pooled wins/losses": None, "pooled McNemar p": None})
        if key[by.index("mode")] != BASE_MODE:
            base_key = tuple(BASE_MODE if k == "mode" else v for k, v in zip(by, key))
            base = [r for r in runs if tuple(r[k] for k in by) == base_key]
            if base:
                wins, losses, p_value = pooled_mcnemar(group, base)
                paired = [r for r in group if any(b["seed"] == r["seed"] for b in base)]
                base_acc = [next(b for b in base if b["seed"] == r["seed"])["test_accuracy"] for r in paired]
                row["Δ vs standard"] = statistics.fmean(r["test_accuracy"] for r in paired) - statistics.fmean(
                    base_acc
                )
                row["pooled wins/losses"] = f"{wins}/{losses}"
                row["pooled McNemar p"] = p_value
        row["CPU-s/run"] = statistics.fmean(r["run_cpu_s"] for r in group)
        row["train tok/s"] = statistics.fmean(r["train_tokens_per_s"] for r in group)
        rows.append(row)
    return rows


def per_run_rows(runs: list[dict]) -> list[dict]:
    return [
        {
            "run": r["run"],
            "n_train": r["n_train"],
            "steps": r["global_steps"],
            "train_tokens": r["train_tokens"],
            "test_acc": r["test_accuracy"],
            "train_s": r["timings"]["train_s"],
            "test_gen_s": r["timings"]["test_generation_s"],
            "CPU-s": r["run_cpu_s"],
            "wall-s": r["run_wall_s"],
            "tok/s": r["train_tokens_per_s"],
        }
        for r in sorted(runs, key=lambda r: (r["train_fraction"], r["label_source"], r["mode"], r["seed"]))
    ]


def table_markdown(name: str, runs: list[dict], summary: list[dict], command: str, plan_path: str, extra=None) -> str:
    """One results table: what was run, the seed summary, and the per-run rows (``extra``: our teacher's job)."""
    first = runs[0]
    teacher = first["teacher_test"]
    header = [
        f"# step-by-step: {name}",
        "",
        f"Command: `{command}` (plan `{plan_path}`); {len(runs)} finished runs.",
        f"Student `{first['student']}` (full fine-tune); task `{first['task']}`; {first['data_splits']['test']} "
        "(the same rows for every run). Steps are the same for every row of a table (batch 8 examples; a "
        "task_prefix step also trains the rationale of each example, so it processes more tokens: see "
        "train_tokens). No model selection: the last step is tested.",
        f"Teacher (PaLM-540B few-shot CoT) on these test rows: {teacher.get('teacher_accuracy_all')} "
        f"(parse rate {teacher.get('parse_rate')}).",
        "",
        "## Mean ± std over seeds; McNemar exact p on predictions pooled over seeds (vs standard, same labels)",
        "",
        reporting.markdown_table(summary, floatfmt=".4f"),
        "",
        "## Per run",
        "",
        reporting.markdown_table(per_run_rows(runs), floatfmt=".4g"),
        "",
    ]
    if extra:
        header[5:5] = [
            "",
            "Rationales by our own teacher (`data_gen/rationales.py`, offline SmolLM2-135M-Instruct, few-shot, "
            f"SVAMP train): {json.dumps(extra)}",
        ]
    return "\n".join(header)


def load_results(plan: dict) -> list[dict]:
    root = Path(plan["results_dir"], "runs")
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(root.glob("*/*.json"))]


def select(runs: list[dict], table: dict) -> list[dict]:
    return [r for r in runs if all(r.get(k) == v for k, v in table.items())]


def render_plan_tables(plan: dict, command: str) -> dict[str, Path]:
    """Write every table of the plan from the finished runs' JSON (tables with no finished run are skipped)."""
    results = load_results(plan)
    out_dir = Path(plan["results_dir"])
    written = {}
    for name, table in plan["tables"].items():
        runs = select(results, table)
        if not runs:
            continue
        by = ("train_fraction", "label_source", "mode") if name == "data_fraction" else ("label_source", "mode")
        summary = summarize(runs, by)
        first = runs[0]
        extra = plan.get("_teacher_summary") if name == "teacher_chain" else None
        text = table_markdown(name, runs, summary, command, plan.get("_path", ""), extra)
        md = out_dir / f"{name}.md"
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(text, encoding="utf-8")
        payload = {"table": name, "select": table, "summary": summary, "runs": per_run_rows(runs)}
        if extra:
            payload["teacher"] = extra
        (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        written[name] = md
        if name == "data_fraction":
            points = [
                {
                    "train_fraction": r["train_fraction"],
                    "test_accuracy": r["test_acc_mean"],
                    "series": f"{r['label_source']}-{r['mode']}",
                }
                for r in summary
            ]
            title = f"{first['task']}: test accuracy vs fraction of train ({first['global_steps']} steps)"
            reporting.plot_xy(
                points, "train_fraction", "test_accuracy", "series", out_dir / "data_fraction.png", title=title
            )
    return written
