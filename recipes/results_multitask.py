"""Every multi-task QLoRA results table in one resumable command (``make results-multitask``).

Runs (each a subprocess of ``recipes/qlora_multitask.py`` on ``recipes/configs/qlora_multitask/results_cpu.yaml``,
skipped when its ``metrics.json`` exists, so a killed command resumes at the first unfinished run):

* ``qlora``: the 4-bit multi-task model (dev-loss curve every 20 steps), single-task 4-bit models at **equal total
  budget** (``split_by_mixture``: together they train the multi-task model's steps) and the fine-tuned MiniLM
  encoder (sequence + token classifier, same step split);
* ``lora_fp32``: the same multi-task model on the fp32 base (no quantization; no dev curve, which does not change
  the training): accuracy gap and memory;
* ``qlora_task_rows`` (not in the default set: ~2.5x the CPU of ``qlora`` on this box): single-task 4-bit models at
  **equal per-task budget** (``match_task_rows``: each trains as many rows of its task as the multi-task model saw);
  the multi-task model of this run is the ``qlora`` one retrained with the same seed (a reproducibility check).

Every row is scored on the same test rows (150 per task: SNIPS official test, SLURP carved from devel, 20NG
official test). Writes ``results/qlora_multitask/results.md`` + ``results.json`` + the dev-loss curves.

    python recipes/results_multitask.py            # qlora + lora_fp32 (those not yet done), then the tables
    python recipes/results_multitask.py --runs qlora qlora_task_rows
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

from toolkit.publishing import reporting

ROOT = Path(__file__).resolve().parent.parent

CONFIG = ROOT / "recipes" / "configs" / "qlora_multitask" / "results_cpu.yaml"
RUN_DIR = ROOT / "runs" / "qlora_multitask" / "results"
OUT = ROOT / "results" / "qlora_multitask"
RUNS = {
    "qlora": [],
    "lora_fp32": ["--quantization", "false", "--baselines", "none", "--dev_curve_rows", "0", "--eval_strategy", "no"],
    "qlora_task_rows": ["--baselines", "single_task", "--baseline_budget", "match_task_rows", "--dev_curve_rows", "0"],
}
logger = logging.getLogger("results_multitask")


def run(name: str) -> dict:
    """Run one configuration unless its metrics exist; returns its metrics.json."""
    out = RUN_DIR / name
    if not (out / "metrics.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(ROOT / "recipes" / "qlora_multitask.py"), "--config", str(CONFIG), *RUNS[name]]
        cmd += ["--output_dir", str(out)]
        logger.info("run %s: %s", name, " ".join(cmd))
        with open(out / "log.txt", "w", encoding="utf-8") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


_COMPUTE = ["train steps", "train tokens", "train CPU-s", "train s", "peak RSS MB", "model MB"]
_METRICS = [
    "intent acc",
    "intent acc (snapped)",
    "intent macro-F1",
    "slot F1",
    "EM",
    "acc",
    "acc (snapped)",
    "macro-F1",
]
_VALIDITY = ["model", "task", "acc (strict)", "acc (snapped)", "invalid labels", "slot values not found",
             "malformed slot items", "n"]  # fmt: skip


def _columns(rows: list[dict]) -> list[str]:
    """model, then each task's metrics in a fixed order (metrics.json sorts keys), then compute."""
    keys = {k for r in rows for k in r} - {"model", *_COMPUTE}
    sources = list(
        dict.fromkeys(k.split(" ", 1)[0] for k in sorted(keys, key=lambda k: ("snips slurp 20ng".find(k[:4]), k)))
    )

    def rank(key: str) -> tuple:
        source, metric = key.split(" ", 1)
        return sources.index(source), _METRICS.index(metric) if metric in _METRICS else len(_METRICS)

    return ["model", *sorted(keys, key=rank), *[c for c in _COMPUTE if any(c in r for r in rows)]]


def _rename(row: dict, label: str) -> dict:
    return {**row, "model": label}


def tables(done: dict[str, dict]) -> tuple[str, dict]:
    """Markdown + JSON of the finished runs."""
    rows, validity = [], []
    if "qlora" in done:
        q = done["qlora"]
        for row in q["table"]:
            label = row["model"]
            if label.startswith("single-task"):
                label += " — equal total budget"
            rows.append(_rename(row, label))
        validity += q["validity"]
    if "qlora_task_rows" in done:
        t = done["qlora_task_rows"]
        rows.append(_rename(t["table"][0], "multi-task QLoRA, same seed retrained (reproducibility)"))
        rows += [_rename(r, r["model"] + " — equal per-task rows") for r in t["table"][1:]]
    if "lora_fp32" in done:
        rows.append(done["lora_fp32"]["table"][0])
        validity += [v | {"model": "multitask fp32"} for v in done["lora_fp32"]["validity"]]
    first = next(iter(done.values()))
    md = [
        "# Multi-task QLoRA (Zhao et al. 2024) on CPU: SmolLM2-135M-Instruct",
        "",
        "Made by `make results-multitask` (`python recipes/results_multitask.py`). Every row is scored on the same "
        "rows:",
        "",
        *[f"- `{task}`: {rows_}" for task, rows_ in first["scored"].items()],
        "",
        "acc = strict accuracy (the headline: an answer that is not a label is wrong); label fields are decoded under "
        "a trie of the train labels, so invalid answers can only come from the slot field. macro-F1 over the train "
        "label set; slot F1 = span F1 (conlleval). Compute: optimizer steps × 8 rows, non-padding tokens, CPU-s "
        "(both cores), peak RSS of the training process while that model trained.",
        "",
        reporting.markdown_table(rows, _columns(rows), floatfmt=".4f"),
        "",
        "## Answer validity",
        "",
        reporting.markdown_table(validity, [c for c in _VALIDITY if any(c in v for v in validity)], floatfmt=".4f"),
    ]
    return "\n".join(md) + "\n", {"rows": rows, "validity": validity, "runs": {k: _trim(v) for k, v in done.items()}}


def _trim(obj):
    """A run's metrics without per-step logs (the curves are plotted)."""
    if isinstance(obj, dict):
        return {k: _trim(v) for k, v in obj.items() if k != "log_history"}
    return [_trim(v) for v in obj] if isinstance(obj, list) else obj


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", default=["qlora", "lora_fp32"], choices=list(RUNS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    done = {}
    for name in args.runs:
        done[name] = run(name)
    for name in RUNS:  # tables cover every finished run, also those of earlier invocations
        if name not in done and (RUN_DIR / name / "metrics.json").is_file():
            done[name] = json.loads((RUN_DIR / name / "metrics.json").read_text(encoding="utf-8"))
    OUT.mkdir(parents=True, exist_ok=True)
    for name, metrics in done.items():
        history = metrics["multitask"]["train"].get("log_history") or []
        reporting.plot_training_curves(history, OUT / f"curves_{name}.png", title=f"multi-task model ({name})")
    md, data = tables(done)
    (OUT / "results.md").write_text(md, encoding="utf-8")
    reporting.write_metrics(OUT, data, name="results.json")
    print(md)


if __name__ == "__main__":
    main()
