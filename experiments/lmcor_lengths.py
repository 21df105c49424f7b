"""Token lengths of an LMCor plan's corrector inputs and targets, to set its length caps before any run.

A cap is chosen on the **training** rows only (never on test): the smallest multiple of 16 that cuts at most 1% of
the training examples' inputs (source plus k candidates, as the recipe renders them) and of their targets. The
dev and test shares the chosen caps would cut are printed beside, so the plan can say what it costs there.

Run: ``python -m experiments.lmcor_lengths experiments/plans/lmcor_wmt22_csen.yaml`` (prints a markdown table).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import yaml

from experiments.per_system import plan_config
from experiments.plan import load_plan
from toolkit.methods.lmcor.data import corrector_examples, load_splits
from toolkit.methods.lmcor.formats import CorrectorFormat
from toolkit.models.loading import load_tokenizer, resolve_model

MAX_CUT_SHARE = 0.01


def quantile(values: list[int], q: float) -> int:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def smallest_cap(lengths: list[int], max_cut_share: float = MAX_CUT_SHARE, step: int = 16) -> int:
    """The smallest multiple of ``step`` that at most ``max_cut_share`` of ``lengths`` exceed."""
    cap = step
    while sum(length > cap for length in lengths) > max_cut_share * len(lengths):
        cap += step
    return cap


def cut_share(lengths: list[int], cap: int) -> float:
    return sum(length > cap for length in lengths) / max(1, len(lengths))


def measure(plan_path: str, data_dir: str | None = None) -> dict:
    """Input and target token lengths per split for the plan's k = 4 corrector (seed 0 training subsets)."""
    plan = load_plan(plan_path)
    config = plan_config(plan, data_dir)
    tokenizer = load_tokenizer(resolve_model(student_name(plan)))
    splits = load_splits(config)
    fmt = CorrectorFormat(config.separator, config.source_prefix, config.candidates_prefix)
    examples = corrector_examples(splits, config, fmt, seed=0)

    def ids(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    lengths = {
        "train": ([ids(e["source"]) for e in examples["train"]], [ids(e["target"]) + 1 for e in examples["train"]]),
        "dev": ([ids(e["source"]) for e in examples["dev"]], [ids(e["target"]) + 1 for e in examples["dev"]]),
        "test": (
            [ids(text) for text in examples["test"]],
            [ids(ref) + 1 for row in splits["test"] for ref in row["references"]],
        ),
    }
    input_cap = smallest_cap(lengths["train"][0])
    target_cap = smallest_cap(lengths["train"][1])
    return {"plan": plan.name, "lengths": lengths, "input_cap": input_cap, "target_cap": target_cap}


def student_name(plan) -> str:
    """The plan's student (its overrides first, then its recipe config)."""
    config = yaml.safe_load(Path(plan.config).read_text(encoding="utf-8"))
    return plan.overrides.get("model_name_or_path", config["model_name_or_path"])


def to_markdown(result: dict, also_caps: list[int] = ()) -> str:
    lines = [
        f"Plan `{result['plan']}`: chosen on train, input cap {result['input_cap']}, "
        f"target cap {result['target_cap']} tokens (EOS included).",
        "",
        "| split | what | n | p50 | p99 | max | cut at input cap | cut at target cap |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split, (inputs, targets) in result["lengths"].items():
        for what, values, cap in (("input", inputs, result["input_cap"]), ("target", targets, result["target_cap"])):
            cell = f"{100 * cut_share(values, cap):.1f}%"
            cut_cells = f"{cell} | " if what == "input" else f" | {cell}"
            lines.append(
                f"| {split} | {what} | {len(values)} | {quantile(values, 0.5)} | {quantile(values, 0.99)} "
                f"| {max(values)} | {cut_cells} |"
            )
    for cap in also_caps:
        shares = ", ".join(
            f"{split} {100 * cut_share(inputs, cap):.1f}%" for split, (inputs, _) in result["lengths"].items()
        )
        lines.append(f"\nInputs over {cap} tokens: {shares}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--also-cap", type=int, nargs="*", default=[], help="Also print the input share over these caps."
    )
    args = parser.parse_args(argv)
    result = measure(args.plan, args.data_dir)
    print(to_markdown(result, args.also_cap))
    return result


if __name__ == "__main__":
    main()
