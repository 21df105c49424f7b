"""Intervals for the LLMEmbed and multi-task tables made before ``results/PROTOCOL.md``, from their accuracies alone.

Those runs kept per-method accuracies (``results/<recipe>/results.json``) but not per-row predictions, so the
paired bootstrap of the protocol cannot be computed for them. What can be said honestly is the interval of each
claimed difference treated as two independent samples of the same size
(:func:`experiments.stats.unpaired_proportion_difference`): one seed, row-level variance only, and usually wider
than the paired interval would be. Span F1 (slots) has no such interval without the rows; it is reported bare.
The tables stay exploratory; a plan made under the protocol replaces them.

Run: ``python -m experiments.legacy_accuracy`` (writes ``results/{llmembed,qlora_multitask}/intervals.{md,json}``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from experiments.stats import unpaired_proportion_difference

logger = logging.getLogger("experiments")

#: LLMEmbed: (system, baseline) method pairs the README's claims rest on.
LLMEMBED_PAIRS = (
    ("llmembed", "finetuned_encoder"),
    ("llmembed_last_token", "finetuned_encoder"),
    ("encoder_only", "finetuned_encoder"),
    ("llmembed", "encoder_only"),
    ("llmembed", "llm_only"),
    ("llm_only", "last_layer_only"),
    ("llmembed", "llmembed_last_token"),
)
#: Multi-task: (system row prefix, baseline row prefix, accuracy column) of the README's claims.
MULTITASK_PAIRS = (
    ("multi-task QLoRA", "single-task QLoRA x2", "snips intent acc"),
    ("multi-task QLoRA", "single-task QLoRA: slurp", "slurp intent acc"),
    ("multi-task QLoRA", "single-task QLoRA: 20ng", "20ng acc"),
    ("multi-task LoRA", "multi-task QLoRA", "snips intent acc"),
    ("multi-task LoRA", "multi-task QLoRA", "slurp intent acc"),
    ("multi-task LoRA", "multi-task QLoRA", "20ng acc"),
    ("multi-task LoRA", "single-task QLoRA x2", "snips intent acc"),
    ("multi-task LoRA", "single-task QLoRA: slurp", "slurp intent acc"),
    ("multi-task LoRA", "single-task QLoRA: 20ng", "20ng acc"),
)
MULTITASK_TEST_ROWS = 150  # per task, the same rows for every model (results/qlora_multitask/README.md)
WITHIN = -2.0  # "within 2 points": the whole interval above -2


def interval_row(label: str, system: float, baseline: float, rows: int) -> dict:
    difference, low, high = unpaired_proportion_difference(system, baseline, rows)
    return {
        "comparison": label,
        "system": 100 * system,
        "baseline": 100 * baseline,
        "rows": rows,
        "difference": 100 * difference,
        "ci_low": 100 * low,
        "ci_high": 100 * high,
        # one seed: never a protocol verdict ("met"), only where the interval lies
        "interval_above_0": bool(low > 0),
        "interval_above_minus_2": bool(100 * low > WITHIN),
    }


def llmembed_intervals(results: dict) -> list[dict]:
    rows = []
    for dataset, table in sorted(results.items()):
        by_method = {row["method"]: row for row in table["rows"]}
        for system, baseline in LLMEMBED_PAIRS:
            if system in by_method and baseline in by_method:
                n_test = by_method[system]["n_test"]
                label = f"{dataset}: {system} - {baseline}"
                rows.append(
                    interval_row(label, by_method[system]["accuracy"], by_method[baseline]["accuracy"], n_test)
                )
    return rows


def multitask_intervals(results: dict) -> list[dict]:
    rows = []
    for system, baseline, column in MULTITASK_PAIRS:
        found = [find_row(results["rows"], prefix, column) for prefix in (system, baseline)]
        if None in found:
            logger.info("multi-task: no %r for %s / %s", column, system, baseline)
            continue
        label = f"{column}: {found[0]['model']} - {found[1]['model']}"
        rows.append(interval_row(label, found[0][column], found[1][column], MULTITASK_TEST_ROWS))
    return rows


def find_row(rows: list[dict], prefix: str, column: str) -> dict | None:
    return next((row for row in rows if row["model"].startswith(prefix) and column in row), None)


def to_markdown(title: str, rows: list[dict]) -> str:
    lines = [
        f"# {title} (EXPLORATORY: pre-protocol runs, one seed)",
        "",
        "Made by `python -m experiments.legacy_accuracy`. Accuracy in points; 95% interval of each difference from a "
        "normal approximation treating the two systems as independent samples of the same test rows (the runs kept "
        "no per-row predictions, so the paired bootstrap of `results/PROTOCOL.md` cannot be computed; a paired "
        "interval would usually be narrower). One seed: row variance only, so no row is a verdict under the "
        "protocol (that needs 3 seeds a side); the last two columns say only where the interval lies.",
        "",
        "| comparison | system | baseline | rows | difference [95% interval] | interval > 0 | interval > -2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['comparison']} | {row['system']:.1f} | {row['baseline']:.1f} | {row['rows']} "
            f"| {row['difference']:+.1f} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}] "
            f"| {yes_no(row['interval_above_0'])} | {yes_no(row['interval_above_minus_2'])} |"
        )
    return "\n".join(lines) + "\n"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def write(out: Path, title: str, rows: list[dict]) -> None:
    out.with_suffix(".json").write_text(
        json.dumps({"exploratory": True, "rows": rows}, indent=2) + "\n", encoding="utf-8"
    )
    out.with_suffix(".md").write_text(to_markdown(title, rows), encoding="utf-8")
    logger.info("wrote %s.{md,json}: %d comparisons", out, len(rows))


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(prog="python -m experiments.legacy_accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--results_root", default="results", help="where results/<recipe>/results.json live")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    root = Path(args.results_root)
    made = {
        "llmembed": llmembed_intervals(json.loads((root / "llmembed" / "results.json").read_text(encoding="utf-8"))),
        "qlora_multitask": multitask_intervals(
            json.loads((root / "qlora_multitask" / "results.json").read_text(encoding="utf-8"))
        ),
    }
    write(root / "llmembed" / "intervals", "LLMEmbed: differences with intervals", made["llmembed"])
    write(root / "qlora_multitask" / "intervals", "Multi-task: differences with intervals", made["qlora_multitask"])
    return made


if __name__ == "__main__":
    main()
