"""Distilling step-by-step comparison tables: step-by-step vs standard with the same labels, data and seeds.

McNemar's exact test on the paired test predictions (pooled over seeds: pairs = (seed, test row), matched seed by
seed), mean ± std test accuracy over seeds, and the markdown of one results table. Used by
``recipes/compare_step_by_step.py`` (one grid of runs) and ``recipes/results_step_by_step.py`` (the plan's tables).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from toolkit.publishing import reporting

BASE_MODE = "standard"

__all__ = [
    "BASE_MODE",
    "discordant",
    "mcnemar_p",
    "load_results",
    "per_run_rows",
    "pooled_mcnemar",
    "render_plan_tables",
    "run_group",
    "seed_summary",
    "select",
    "summarize",
    "table_markdown",
]


def mcnemar_p(wins: int, losses: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs (binomial test of wins vs losses at 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def discordant(run: dict, base: dict, root: str) -> tuple[int, int]:
    """Test rows only ``run`` gets right (wins) and only ``base`` gets right (losses), paired by row id."""

    def correct(r):
        path = Path(root, r["run"], "predictions.jsonl")
        return {p["id"]: p["correct"] for p in map(json.loads, path.read_text(encoding="utf-8").splitlines())}

    a, b = correct(run), correct(base)
    if a.keys() != b.keys():
        raise ValueError(f"{run['run']} and {base['run']} were scored on different test rows")
    return sum(a[k] and not b[k] for k in a), sum(b[k] and not a[k] for k in a)


def run_group(run: dict) -> tuple:
    return run["train_fraction"], run["label_source"], run["mode"]


def seed_summary(runs: list[dict], root: str, base_mode: str) -> list[dict]:
    """Per (fraction, labels, mode): mean ± std test accuracy over seeds, and McNemar vs ``base_mode`` on the
    paired predictions pooled over seeds (each pair = one test row under one seed, matched seed by seed)."""
    rows = []
    for key in dict.fromkeys(run_group(r) for r in runs):
        group = [r for r in runs if run_group(r) == key]
        accs = [r["test_accuracy"] for r in group]
        row = {
            "train_fraction": key[0],
            "labels": key[1],
            "mode": key[2],
            "seeds": len(group),
            "test_acc_mean": statistics.fmean(accs),
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "n_train": group[0]["n_train"],
            "steps": group[0]["global_steps"],
        }
        if key[2] != base_mode:
            wins = losses = 0
            for r in group:
                base = next(b for b in runs if run_group(b) == (key[0], key[1], base_mode) and b["seed"] == r["seed"])
                w, lo = discordant(r, base, root)
                wins, losses = wins + w, losses + lo
            row.update({"pooled wins/losses": f"{wins}/{losses}", "pooled McNemar p": mcnemar_p(wins, losses)})
        rows.append(row)
    return rows


def pooled_mcnemar(runs: list[dict], base_runs: list[dict]) -> tuple[int, int, float]:
    """Discordant pairs of ``runs`` vs ``base_runs`` matched by seed then test row id, pooled; exact McNemar p."""
    wins = losses = 0
    for r in runs:
        base = next((b for b in base_runs if b["seed"] == r["seed"]), None)
        if base is None:
            continue
        a = {p["id"]: p["correct"] for p in r["predictions"]}
        b = {p["id"]: p["correct"] for p in base["predictions"]}
        if a.keys() != b.keys():
            raise ValueError(f"{r['run']} and {base['run']} were scored on different test rows")
        wins += sum(a[k] and not b[k] for k in a)
        losses += sum(b[k] and not a[k] for k in a)
    return wins, losses, mcnemar_p(wins, losses)


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
                w, lo, p = pooled_mcnemar(group, base)
                paired = [r for r in group if any(b["seed"] == r["seed"] for b in base)]
                base_acc = [next(b for b in base if b["seed"] == r["seed"])["test_accuracy"] for r in paired]
                row["Δ vs standard"] = statistics.fmean(r["test_accuracy"] for r in paired) - statistics.fmean(
                    base_acc
                )
                row["pooled wins/losses"] = f"{w}/{lo}"
                row["pooled McNemar p"] = p
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
            "train_s": r["train_wall_s"],
            "test_gen_s": r["test_generation_s"],
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
                {"train_fraction": r["train_fraction"], "test_accuracy": r["test_acc_mean"],
                 "series": f"{r['label_source']}-{r['mode']}"}
                for r in summary
            ]  # fmt: skip
            reporting.plot_xy(
                points, "train_fraction", "test_accuracy", "series", out_dir / "data_fraction.png",
                title=f"{first['task']}: test accuracy vs fraction of train ({first['global_steps']} steps)",
            )  # fmt: skip
    return written
