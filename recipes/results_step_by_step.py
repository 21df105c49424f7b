"""Reproduce the distilling step-by-step tables (SVAMP, CQA, data-fraction curve, a teacher of our own): one command.

    make results-step-by-step
    # = python recipes/results_step_by_step.py --plan recipes/configs/step_by_step/plans/results_cpu.yaml

The plan (YAML) names *namespaces* (a base recipe config + overrides shared by every run in it: same student,
steps, batch, test rows), *blocks* (which label sources x modes x train fractions x seeds to run, in priority order)
and *tables* (which runs of a namespace each table shows). Every finished run is saved as
``<results_dir>/runs/<namespace>/<run>.json`` (metrics, process CPU seconds, per-row test correctness), and a run
with that file is skipped, so a killed command resumes where it stopped. The tables are re-rendered after every
run from those JSON files: ``<results_dir>/<table>.md`` + ``<table>.json`` (+ ``data_fraction.png``).

Per table: mean ± std test accuracy over seeds per (labels, mode), the gain of step-by-step (``task_prefix``) over
``standard`` with the same labels, and McNemar's exact test on the paired test predictions pooled over seeds
(pairs = (seed, test row), matched seed by seed). The ``teacher`` block runs ``data_gen/rationales.py`` first
(skipped when its ``summary.json`` exists) and trains its namespace on the rationales it wrote.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from toolkit.configs import load_script
from toolkit.methods.step_by_step.tables import pooled_mcnemar, render_plan_tables, select  # noqa: F401
from toolkit.runtime import configure_threads

compare = load_script(Path(__file__).with_name("compare_step_by_step.py"))  # recipes/ is not a package

logger = logging.getLogger("results_step_by_step")


def run_name(label_source: str, mode: str, fraction: float, seed: int) -> str:
    return f"{label_source}-{mode}-f{fraction:g}-s{seed}"


def load_plan(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        plan = yaml.safe_load(f)
    for key in ("results_dir", "runs_dir", "namespaces", "blocks", "tables"):
        if key not in plan:
            raise ValueError(f"plan {path} has no {key!r}")
    for block in plan["blocks"]:
        if block["namespace"] not in plan["namespaces"]:
            raise ValueError(f"block names unknown namespace {block['namespace']!r}")
    return plan


def planned_runs(plan: dict) -> list[dict]:
    """Every (namespace, labels, mode, fraction, seed) of the plan's blocks, in block order, without repeats."""
    runs, seen = [], set()
    for block in plan["blocks"]:
        for fraction in block.get("train_fractions", [1.0]):
            for seed in block.get("seeds", [0]):
                for source in block.get("label_sources", ["gt"]):
                    for mode in block.get("modes", ["standard", "task_prefix"]):
                        key = (block["namespace"], run_name(source, mode, fraction, seed))
                        if key not in seen:
                            seen.add(key)
                            runs.append(
                                {"namespace": key[0], "run": key[1], "label_source": source, "mode": mode,
                                 "train_fraction": fraction, "seed": seed}
                            )  # fmt: skip
    return runs


def run_args(plan: dict, spec: dict, extra: dict | None = None):
    """(StepByStepArguments, TrainingArguments) of one run: namespace config + overrides + the run's axes."""
    ns = plan["namespaces"][spec["namespace"]]
    with open(ns["config"], encoding="utf-8") as f:
        values = yaml.safe_load(f)
    values.update(ns.get("overrides") or {})
    values.update(extra or {})
    values.update(
        mode=spec["mode"],
        label_source=spec["label_source"],
        train_fraction=spec["train_fraction"],
        seed=spec["seed"],
        output_dir=os.path.join(plan["runs_dir"], spec["namespace"], spec["run"]),
        push_to_hub=False,
    )
    return compare.recipe.make_parser().parse_dict(values)


def result_path(plan: dict, spec: dict) -> Path:
    return Path(plan["results_dir"], "runs", spec["namespace"], spec["run"] + ".json")


def execute(plan: dict, spec: dict, extra: dict | None = None) -> dict:
    """Train + test one run; save its result JSON (with CPU seconds and per-row correctness); drop the weights."""
    script_args, training_args = run_args(plan, spec, extra)
    wall, cpu = time.perf_counter(), time.process_time()
    metrics = compare.recipe.main(script_args, training_args)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    out = training_args.output_dir
    preds = [json.loads(line) for line in Path(out, "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    result = {
        **spec,
        **{k: v for k, v in metrics.items() if k not in ("lineage",)},
        "run_cpu_s": cpu,
        "run_wall_s": wall,
        "threads": int(os.environ.get("TOOLKIT_NUM_THREADS") or 0) or None,
        "predictions": [{"id": p["id"], "prediction": p["prediction"], "correct": p["correct"]} for p in preds],
    }
    path = result_path(plan, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # a run counts as finished only once its whole JSON is in place
    # The weights (540 MB per SmolLM2 run) are not part of the results; the run dir keeps logs and plots.
    for p in Path(out).glob("*.safetensors"):
        p.unlink()
    for p in Path(out).glob("checkpoint-*"):
        shutil.rmtree(p, ignore_errors=True)
    return result


def run_teacher(plan: dict) -> dict | None:
    """Run the plan's rationales job (once) and return its summary; its dataset trains the teacher namespace."""
    teacher = plan.get("teacher")
    if not teacher:
        return None
    out = Path(plan["runs_dir"], "teacher_rationales")
    if not (out / "summary.json").is_file():
        cmd = [sys.executable, "data_gen/rationales.py", "--config", teacher["config"], "--output_dir", str(out)]
        for key, value in (teacher.get("args") or {}).items():
            cmd += [f"--{key}", str(value)]
        logger.info("==== teacher: %s ====", " ".join(cmd))
        cpu = os.times()
        subprocess.run(cmd, check=True)
        done = os.times()
        (out / "job_cpu_s.json").write_text(
            json.dumps({"cpu_s": done.children_user + done.children_system - cpu.children_user - cpu.children_system})
        )
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    cpu_file = out / "job_cpu_s.json"
    keep = ("teacher_id", "split", "n", "items", "parse_rate", "teacher_accuracy", "teacher_accuracy_parsed")
    info = {k: summary[k] for k in keep if k in summary}
    if cpu_file.is_file():
        info["job_cpu_s"] = round(json.loads(cpu_file.read_text())["cpu_s"], 1)
    info["dataset"] = str(out / "dataset")
    return info


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", default="recipes/configs/step_by_step/plans/results_cpu.yaml")
    parser.add_argument("--only", nargs="*", help="Run only these namespaces (tables are rendered for all).")
    parser.add_argument("--render_only", action="store_true", help="Re-render the tables; run nothing.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_threads()
    plan = load_plan(args.plan)
    plan["_path"] = args.plan
    command = "make results-step-by-step"
    done, failed = [], []
    specs = [] if args.render_only else planned_runs(plan)
    for spec in specs:
        if args.only and spec["namespace"] not in args.only:
            continue
        if result_path(plan, spec).is_file():
            logger.info("==== %s/%s: finished, skipped ====", spec["namespace"], spec["run"])
            continue
        logger.info("==== %s/%s ====", spec["namespace"], spec["run"])
        try:
            extra = None
            if plan.get("teacher") and spec["namespace"] == plan["teacher"]["namespace"]:
                plan["_teacher_summary"] = run_teacher(plan)
                extra = {"train_source": plan["_teacher_summary"]["dataset"]}
            done.append(execute(plan, spec, extra))
        except Exception:  # noqa: BLE001 - one failed run must not cost the rest of a 2-hour grid; rerun resumes it
            logger.exception("run %s/%s failed; continuing with the next run", spec["namespace"], spec["run"])
            failed.append(f"{spec['namespace']}/{spec['run']}")
            continue
        render_plan_tables(plan, command)
    if plan.get("teacher") and Path(plan["runs_dir"], "teacher_rationales", "summary.json").is_file():
        plan["_teacher_summary"] = run_teacher(plan)
    for name, path in render_plan_tables(plan, command).items():
        logger.info("table %s -> %s", name, path)
    if failed:
        raise SystemExit(f"{len(failed)} runs failed (rerun to retry them): {', '.join(failed)}")
    return done


if __name__ == "__main__":
    main()
