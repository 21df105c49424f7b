"""Every LLMEmbed results table in one resumable command (``make results-llmembed``).

One recipe run per dataset (SST-2, AG News, R8), each a subprocess of ``recipes/llmembed.py`` on its
``recipes/configs/llmembed/<dataset>.yaml`` with the sizes below, skipped when its ``metrics.json`` exists; the
embedding cache (``runs/llmembed/results/cache``) makes a re-run after a kill cost only the unfinished extraction.
Methods, all on the same test rows of a dataset: LLMEmbed fused (SmolLM2-135M layers -5..-1, mean-pooled, +
MiniLM-L6), LLM layers only, last LLM layer only, encoder only, fused with last-token pooling, and MiniLM-L6
fine-tuned end to end (3 epochs, the same training rows). Few-shot prompting is left out here (see the recipe).

Writes ``results/llmembed/results.md`` + ``results.json``: accuracy, macro-F1, extraction / head / total training
CPU-s, inference CPU-s per 1k rows, and each LLMEmbed row's gap to the fine-tuned encoder and its training CPU as a
share of the encoder's.

    python recipes/results_llmembed.py                  # every dataset not yet done, then the tables
    python recipes/results_llmembed.py --datasets sst2
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
RUN_DIR = ROOT / "runs" / "llmembed" / "results"
OUT = ROOT / "results" / "llmembed"
# Train rows include the validation rows (val_size) used for the head's early stopping.
SIZES = {
    "sst2": {"max_train_samples": 4300, "val_size": 300, "max_test_samples": 1000},
    "ag_news": {"max_train_samples": 4300, "val_size": 300, "max_test_samples": 1000},
    # R8's posts fill the 128-token window: extraction costs ~3x SST-2's per row, so a smaller sample fits the budget.
    "r8": {"max_train_samples": 1800, "val_size": 300, "max_test_samples": 500},
}
VARIANTS = ["llmembed", "llm_only", "last_layer_only", "encoder_only", "llmembed_last_token"]
COLUMNS = ["method", "accuracy", "macro_f1", "Δacc vs fine-tuned", "extract_cpu_s", "head_cpu_s", "train_cpu_s",
           "train CPU / fine-tuned", "infer_cpu_s_per_1k", "n_train", "n_test"]  # fmt: skip
logger = logging.getLogger("results_llmembed")


def run(dataset: str) -> dict:
    """Run one dataset unless its metrics exist; returns its metrics.json."""
    out = RUN_DIR / dataset
    if not (out / "metrics.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(ROOT / "recipes" / "llmembed.py")]
        cmd += ["--config", str(ROOT / "recipes" / "configs" / "llmembed" / f"{dataset}.yaml")]
        for key, value in SIZES[dataset].items():
            cmd += [f"--{key}", str(value)]
        cmd += ["--variants", *VARIANTS, "--run_few_shot", "false"]
        cmd += ["--output_dir", str(out), "--cache_dir", str(RUN_DIR / "cache")]
        logger.info("run %s: %s", dataset, " ".join(cmd))
        with open(out / "log.txt", "w", encoding="utf-8") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def dataset_rows(metrics: dict) -> list[dict]:
    """The all-rows table of one dataset with the target columns (gap and CPU share vs the fine-tuned encoder)."""
    rows = [dict(r) for r in metrics["rows"]]
    ref = next((r for r in rows if r["method"] == "finetuned_encoder"), None)
    for r in rows:
        if ref is not None:
            r["Δacc vs fine-tuned"] = r["accuracy"] - ref["accuracy"]
            r["train CPU / fine-tuned"] = r["train_cpu_s"] / ref["train_cpu_s"] if ref["train_cpu_s"] else None
    return rows


def render(done: dict[str, dict]) -> str:
    md = [
        "# LLMEmbed (Liu et al. 2024) on CPU: SmolLM2-135M + MiniLM-L6",
        "",
        "Made by `make results-llmembed` (`python recipes/results_llmembed.py`). Within a dataset every row is "
        "scored on the same test rows. CPU-s are process CPU seconds (2 cores); extraction is charged to every "
        "method that uses the features (train + validation rows); `llmembed_last_token` shares the LLM's forward "
        "passes with the mean-pooled features and is charged the whole pass. Target: fused LLMEmbed within 2 "
        "points of the fine-tuned encoder at ≤ 10% of its training CPU.",
    ]
    for dataset, metrics in done.items():
        sizes, splits = metrics["sizes"], metrics["splits"]
        md += [
            "",
            f"## {dataset}",
            "",
            f"train {sizes['train']} rows ({splits['train']}), validation {sizes['val']} ({splits.get('dev')}), "
            f"test {sizes['test']} ({splits['test']}).",
            "",
            reporting.markdown_table(dataset_rows(metrics), COLUMNS, floatfmt=".4g"),
        ]
    return "\n".join(md) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    done = {}
    for dataset in SIZES:  # tables cover every finished dataset, also those of earlier invocations
        if dataset in args.datasets or (RUN_DIR / dataset / "metrics.json").is_file():
            done[dataset] = run(dataset)
    OUT.mkdir(parents=True, exist_ok=True)
    md = render(done)
    (OUT / "results.md").write_text(md, encoding="utf-8")
    data = {d: {"rows": dataset_rows(m), "sizes": m["sizes"], "splits": m["splits"]} for d, m in done.items()}
    reporting.write_metrics(OUT, data, name="results.json")
    print(md)


if __name__ == "__main__":
    main()
