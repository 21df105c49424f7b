"""Compare standard training vs distilling step-by-step: same student, data, steps and seed; one table + curve.

Runs ``recipes/step_by_step.py`` once per (train fraction, label source, mode), sequentially, each into
``<output_dir>/<label_source>-<mode>-f<fraction>/``, then writes ``<output_dir>/results.md`` (every run side by
side, the step-by-step gain over standard with the same labels and data, and the teacher's own test accuracy),
``<output_dir>/comparison.json`` and ``<output_dir>/data_fraction_curve.png`` (test accuracy vs train fraction).

Launch:
    OMP_NUM_THREADS=1 python recipes/compare_step_by_step.py --config recipes/configs/step_by_step/svamp.yaml \
        --output_dir runs/sbs-svamp --label_sources gt llm --train_fractions 0.5 1.0
    # or: accelerate launch recipes/compare_step_by_step.py --config ... (same flags)
"""

import dataclasses
import importlib.util
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from toolkit.configs import make_parser as _make_parser
from toolkit.configs import setup_logging

logger = logging.getLogger(__name__)


def _load_recipe():
    # recipes/ is not a package: load the sibling script by path under a private module name.
    spec = importlib.util.spec_from_file_location("_step_by_step_recipe", Path(__file__).with_name("step_by_step.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recipe = _load_recipe()


@dataclass
class CompareArguments:
    """What to compare; everything else (student, data, steps, seed) is shared by all runs."""

    modes: list[str] = field(
        default_factory=lambda: ["standard", "task_prefix"], metadata={"help": "Modes to run (standard, task_prefix)."}
    )
    label_sources: list[str] = field(default_factory=lambda: ["gt"], metadata={"help": "Label sources (gt, llm)."})
    train_fractions: list[float] = field(
        default_factory=lambda: [1.0], metadata={"help": "Train fractions: more than one draws the data-size curve."}
    )

    def __post_init__(self):
        from toolkit.step_by_step import LABEL_SOURCES, MODES

        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {self.modes}")
        if not self.label_sources or any(s not in LABEL_SOURCES for s in self.label_sources):
            raise ValueError(f"label_sources must be a non-empty subset of {LABEL_SOURCES}, got {self.label_sources}")
        if not self.train_fractions or any(not 0 < f <= 1 for f in self.train_fractions):
            raise ValueError(f"train_fractions must be in (0, 1], got {self.train_fractions}")


def mcnemar_p(wins: int, losses: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs (binomial test of wins vs losses at 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _discordant(run: dict, base: dict, root: str) -> tuple[int, int]:
    """Test rows only ``run`` gets right (wins) and only ``base`` gets right (losses), paired by row id."""

    def correct(r):
        path = Path(root, r["run"], "predictions.jsonl")
        return {p["id"]: p["correct"] for p in map(json.loads, path.read_text(encoding="utf-8").splitlines())}

    a, b = correct(run), correct(base)
    if a.keys() != b.keys():
        raise ValueError(f"{run['run']} and {base['run']} were scored on different test rows")
    return sum(a[k] and not b[k] for k in a), sum(b[k] and not a[k] for k in a)


def make_parser():
    return _make_parser([recipe.StepByStepArguments, TrainingArguments, CompareArguments])


def main(script_args, training_args: TrainingArguments, compare_args: CompareArguments) -> list[dict]:
    from toolkit import reporting

    setup_logging()
    root = training_args.output_dir
    if training_args.push_to_hub:
        logger.warning("compare_step_by_step does not push (one repo per run would collide); use the recipe")
    runs: list[dict] = []
    for fraction in compare_args.train_fractions:
        for source in compare_args.label_sources:
            for mode in compare_args.modes:
                name = f"{source}-{mode}-f{fraction:g}"
                logger.info("==== run %s ====", name)
                args = dataclasses.replace(script_args, mode=mode, label_source=source, train_fraction=fraction)
                targs = dataclasses.replace(training_args, output_dir=os.path.join(root, name), push_to_hub=False)
                runs.append({"run": name, **recipe.main(args, targs)})

    rows = []
    for m in runs:
        base = next(
            r
            for r in runs
            if r["mode"] == compare_args.modes[0]
            and r["label_source"] == m["label_source"]
            and r["train_fraction"] == m["train_fraction"]
        )
        rows.append(
            {
                "train_fraction": m["train_fraction"],
                "labels": m["label_source"],
                "mode": m["mode"],
                "alpha": m["alpha"],
                "n_train": m["n_train"],
                "steps": m["global_steps"],
                "dev_acc": m["dev_accuracy"],
                "test_acc": m["test_accuracy"],
                f"Δ vs {compare_args.modes[0]}": m["test_accuracy"] - base["test_accuracy"],
                "wins/losses": "–" if m is base else "{}/{}".format(*_discordant(m, base, root)),
                "McNemar p": None if m is base else mcnemar_p(*_discordant(m, base, root)),
                "train_s": m["train_wall_s"],
                "tok/s": m["train_tokens_per_s"],
            }
        )
    teacher = runs[0]["teacher_test"]
    if teacher["n_parsed"]:
        rows.append({"mode": "teacher (few-shot CoT)", "test_acc": teacher["teacher_accuracy_all"]})
    os.makedirs(root, exist_ok=True)
    reporting.write_table(root, rows, floatfmt=".4f")
    Path(root, "comparison.json").write_text(json.dumps(runs, indent=2, default=str) + "\n", encoding="utf-8")
    points = [
        {
            "train_fraction": m["train_fraction"],
            "test_accuracy": m["test_accuracy"],
            "series": m["run"].rsplit("-", 1)[0],
        }
        for m in runs
    ]
    reporting.plot_xy(
        points,
        "train_fraction",
        "test_accuracy",
        "series",
        os.path.join(root, "data_fraction_curve.png"),
        title=f"{script_args.task}: test accuracy vs training data ({script_args.model_name_or_path})",
    )
    print(reporting.markdown_table(rows, floatfmt=".4f"))
    return runs


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
