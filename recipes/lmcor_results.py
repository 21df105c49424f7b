"""Every LMCor results table in one resumable command (``make results-lmcor``).

Stages (each a subprocess of this script, so a killed run resumes at the first stage without its JSON):

* WMT22 de-en, unseen systems: corrector k=4 (with a learning curve), the no-candidates model (same student,
  same budget, source -> reference, same curve), corrector k=1; then the k=4 corrector on the *training* systems'
  candidates of the same test rows (seen-systems control);
* JFLEG (held-out part of dev, SmolLM2-135M teacher candidates): corrector k=4, no-candidates, k=1;
* plug-and-play across teacher families: the JFLEG k=4 corrector on Gemma 3 270M candidates it never saw.

Run directories go to ``runs/lmcor-results/<stage>`` (models, predictions, logs), per-stage JSON to
``results/lmcor/runs/<stage>.json``; :mod:`recipes.lmcor_report` then writes ``results/lmcor/*.md`` + ``*.json`` +
the learning-curve PNG. Budget flags below are the CPU sizing (2 shared cores); GPU-scale configs are in
``recipes/configs/lmcor/*_gpu.yaml``.

    python recipes/lmcor_results.py                 # every stage not yet done, then the report
    python recipes/lmcor_results.py --stages deen_k4 deen_nocand
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "lmcor-results"
OUT = ROOT / "results" / "lmcor"
CONFIGS = ROOT / "recipes" / "configs" / "lmcor"
CACHE = RUNS / "generations.sqlite"
logger = logging.getLogger("lmcor_results")

DEEN = ["--config", str(CONFIGS / "wmt22_deen.yaml"), "--max_steps", "80"]
CURVE = ["--eval_generate_steps", "20", "40"]
JFLEG = [
    "--config", str(CONFIGS / "jfleg.yaml"), "--pool_path", "", "--dev_size", "5", "--test_size", "50",
    "--max_train_rows", "30", "--max_steps", "30", "--per_device_train_batch_size", "4",
    "--gradient_accumulation_steps", "1", "--eval_strategy", "no",
    "--warmup_steps", "5", "--logging_steps", "5", "--cache_path", str(CACHE),
]  # fmt: skip
# stage -> recipe arguments (recipe stages) or None (evaluation stages run in-process by ``run_stage``)
RECIPE_STAGES = {
    "deen_k4": [*DEEN, "--k", "4", *CURVE],
    "deen_nocand": [*DEEN, "--no_candidates", "true", *CURVE],
    "deen_k1": [*DEEN, "--k", "1"],
    "jfleg_k4": [*JFLEG, "--k", "4"],
    "jfleg_nocand": [*JFLEG, "--k", "4", "--no_candidates", "true"],
    "jfleg_k1": [*JFLEG, "--k", "4", "--single_candidate", "true"],
}
EVAL_STAGES = ("deen_seen", "jfleg_gemma")
STAGES = ("deen_k4", "deen_nocand", "deen_k1", "deen_seen", "jfleg_k4", "jfleg_nocand", "jfleg_k1", "jfleg_gemma")
GEMMA_TEACHER = "local:gemma3-270m"


def stage_json(stage: str) -> Path:
    return OUT / "runs" / f"{stage}.json"


def _trim(results: dict) -> dict:
    return {k: v for k, v in results.items() if k != "predictions"}


def parse_recipe_args(argv: list[str]):
    """The recipe's (script, model, training) arguments for a recipe argv (no run, no side effects)."""
    from toolkit.configs import load_script

    return load_script(ROOT / "recipes" / "lmcor.py").make_parser().parse_args_and_config(argv)


def run_recipe_stage(stage: str) -> dict:
    out_dir = RUNS / stage
    argv = [*RECIPE_STAGES[stage], "--output_dir", str(out_dir)]
    if not (out_dir / "metrics.json").is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "log.txt", "w") as log:
            subprocess.run([sys.executable, str(ROOT / "recipes" / "lmcor.py"), *argv], check=True, stdout=log,
                           stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
    results = json.loads((out_dir / "metrics.json").read_text())
    return {"stage": stage, "argv": argv, **_trim(results)}


def _splits(argv: list[str]):
    from toolkit.methods.lmcor import formats as lmcor
    from toolkit.methods.lmcor.data import filter_rows, split_and_subsample

    script_args, model_args, _ = parse_recipe_args(argv)
    pool = lmcor.load_pool(script_args.task, data_dir=script_args.data_dir, pool_path=script_args.pool_path)
    return script_args, model_args, split_and_subsample(filter_rows(pool, script_args), script_args)


def run_deen_seen() -> dict:
    """The de-en k=4 corrector on the same test rows, reading the first 4 of its 5 *training* systems."""
    from toolkit.methods.lmcor.plug import evaluate_saved_corrector

    script_args, model_args, splits = _splits(RECIPE_STAGES["deen_k4"])
    res = evaluate_saved_corrector(
        RUNS / "deen_k4", script_args, model_args, splits["test"], test_systems=list(script_args.train_systems),
        dev_rows=splits["dev"],
    )  # fmt: skip
    return {"stage": "deen_seen", "systems_read": script_args.train_systems[: script_args.k], **_trim(res)}


def run_jfleg_gemma() -> dict:
    """Gemma 3 270M candidates for the JFLEG test rows; the SmolLM2-candidate-trained k=4 corrector reads them."""
    from toolkit.methods.lmcor.data import teacher_candidates
    from toolkit.methods.lmcor.plug import evaluate_saved_corrector
    from toolkit.teachers import TeacherConfig

    script_args, model_args, splits = _splits(RECIPE_STAGES["jfleg_k4"])
    t0 = time.perf_counter()
    teacher = TeacherConfig(backend="hf", model=GEMMA_TEACHER)
    script_args = dataclasses.replace(script_args, cache_path=str(CACHE))
    rows = teacher_candidates(splits["test"], splits["train"], script_args, teacher)  # the candidates job
    teacher_s = time.perf_counter() - t0
    res = evaluate_saved_corrector(RUNS / "jfleg_k4", script_args, model_args, rows)
    res["timings"]["teacher_candidates_s"] = teacher_s
    return {"stage": "jfleg_gemma", "teacher": GEMMA_TEACHER, "corrector_trained_on": "SmolLM2-135M", **_trim(res)}


def run_stage(stage: str) -> None:
    """Run one stage in this process and write its JSON (with this process's CPU time)."""
    from toolkit.configs import setup_logging
    from toolkit.runtime import configure_threads

    setup_logging()
    configure_threads()
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    s0 = resource.getrusage(resource.RUSAGE_SELF)
    if stage in RECIPE_STAGES:
        result = run_recipe_stage(stage)
    else:
        result = {"deen_seen": run_deen_seen, "jfleg_gemma": run_jfleg_gemma}[stage]()
    r1, s1 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) + (
        s1.ru_utime + s1.ru_stime - s0.ru_utime - s0.ru_stime
    )
    result["budget"] = {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(cpu, 1)}
    if stage in RECIPE_STAGES and result.get("timings", {}).get("train_s"):
        result["budget"]["note"] = "recipe stage: wall/cpu of the first (training) run; a resumed stage re-reads it"
    stage_json(stage).parent.mkdir(parents=True, exist_ok=True)
    tmp = stage_json(stage).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, stage_json(stage))  # atomic: a killed stage leaves no half JSON


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", nargs="*", default=list(STAGES), choices=STAGES)
    p.add_argument("--stage", choices=STAGES, help="(internal) run one stage in this process")
    p.add_argument("--report_only", action="store_true")
    args = p.parse_args(argv)
    if args.stage:
        run_stage(args.stage)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    failed = []
    for stage in [] if args.report_only else args.stages:
        if stage_json(stage).is_file():
            logger.info("%s: done (%s)", stage, stage_json(stage))
            continue
        logger.info("%s: running", stage)
        proc = subprocess.run([sys.executable, __file__, "--stage", stage], cwd=ROOT)
        if proc.returncode:
            logger.error("%s failed (exit %d); later stages still run", stage, proc.returncode)
            failed.append(stage)
        subprocess.run([sys.executable, str(ROOT / "recipes" / "lmcor_report.py")], cwd=ROOT)
    subprocess.run([sys.executable, str(ROOT / "recipes" / "lmcor_report.py")], cwd=ROOT, check=True)
    if failed:
        sys.exit(f"stages failed: {failed}")


if __name__ == "__main__":
    main()
