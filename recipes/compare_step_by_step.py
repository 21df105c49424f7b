"""Compare standard training vs distilling step-by-step: same student, data, steps and seed; one table + curve.

Runs ``recipes/step_by_step.py`` once per (train fraction, label source, mode[, seed]), sequentially, each into
``<output_dir>/<label_source>-<mode>-f<fraction>[-s<seed>]/``, then writes ``<output_dir>/results.md`` (every run
side by side, the step-by-step gain over standard with the same labels, data and seed, McNemar's exact test on the
paired test predictions, the parse failures each run kept/dropped, and the teacher's own test accuracy),
``<output_dir>/comparison.json`` and ``<output_dir>/data_fraction_curve.png`` (test accuracy vs train fraction).
With ``--seeds`` (several training seeds) it also writes ``<output_dir>/summary.md``: mean ± std test accuracy per
(fraction, labels, mode) and McNemar's test on the predictions pooled over seeds (pairs = (seed, test row)).
``--skip_finished`` reuses runs that already wrote ``metrics.json`` and ``predictions.jsonl`` (resume a grid).

Launch:
    OMP_NUM_THREADS=1 python recipes/compare_step_by_step.py --config recipes/configs/step_by_step/svamp.yaml \
        --output_dir runs/sbs-svamp --label_sources gt llm --train_fractions 0.5 1.0 --seeds 0 1 2
    # or: accelerate launch recipes/compare_step_by_step.py --config ... (same flags)
"""

import dataclasses
import importlib.util
import json
import logging
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from toolkit.configs import make_parser as _make_parser
from toolkit.configs import setup_logging
from toolkit.methods.step_by_step.tables import discordant, mcnemar_p, run_group, seed_summary
from toolkit.publishing.report_artifacts import report_from_run_dir
from toolkit.runtime import configure_threads

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
    seeds: list[int] | None = field(
        default=None,
        metadata={"help": "Training seeds: every run repeats per seed (mean ± std, McNemar pooled over seeds). "
                  "Default: one run with the TrainingArguments seed."},
    )  # fmt: skip
    skip_finished: bool = field(
        default=False, metadata={"help": "Reuse runs whose metrics.json and predictions.jsonl exist (resume)."}
    )

    def __post_init__(self):
        from toolkit.methods.step_by_step.training import LABEL_SOURCES, MODES

        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {self.modes}")
        if not self.label_sources or any(s not in LABEL_SOURCES for s in self.label_sources):
            raise ValueError(f"label_sources must be a non-empty subset of {LABEL_SOURCES}, got {self.label_sources}")
        if not self.train_fractions or any(not 0 < f <= 1 for f in self.train_fractions):
            raise ValueError(f"train_fractions must be in (0, 1], got {self.train_fractions}")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")


def make_parser():
    return _make_parser([recipe.StepByStepArguments, TrainingArguments, CompareArguments])


def main(script_args, training_args: TrainingArguments, compare_args: CompareArguments) -> list[dict]:
    from toolkit.publishing import reporting

    setup_logging()
    configure_threads()
    root = training_args.output_dir
    if training_args.push_to_hub:
        logger.warning("compare_step_by_step does not push (one repo per run would collide); use the recipe")
    runs: list[dict] = []
    seeds = compare_args.seeds or [training_args.seed]
    for fraction in compare_args.train_fractions:
        for source in compare_args.label_sources:
            for mode in compare_args.modes:
                for seed in seeds:
                    name = f"{source}-{mode}-f{fraction:g}" + (f"-s{seed}" if compare_args.seeds else "")
                    run_dir = os.path.join(root, name)
                    if compare_args.skip_finished and _finished(run_dir):
                        logger.info("==== run %s: reusing %s ====", name, run_dir)
                        runs.append({"run": name, **json.loads(Path(run_dir, "metrics.json").read_text())})
                        continue
                    logger.info("==== run %s ====", name)
                    args = dataclasses.replace(script_args, mode=mode, label_source=source, train_fraction=fraction)
                    targs = dataclasses.replace(training_args, output_dir=run_dir, push_to_hub=False, seed=seed)
                    runs.append({"run": name, **recipe.main(args, targs)})

    base_mode = compare_args.modes[0]
    rows = []
    for m in runs:
        base = next(r for r in runs if run_group(r) == (m["train_fraction"], m["label_source"], base_mode)
                    and r["seed"] == m["seed"])  # fmt: skip
        excl = m["train_exclusions"]
        rows.append(
            {
                "train_fraction": m["train_fraction"],
                "labels": m["label_source"],
                "mode": m["mode"],
                "seed": m["seed"],
                "alpha": m["alpha"],
                "n_train": m["n_train"],
                "parse-fail kept/dropped": f"{excl['kept_parse_failure']}/{excl['excluded_parse_failure']}",
                "steps": m["global_steps"],
                "dev_acc": m["dev_accuracy"],
                "test_acc": m["test_accuracy"],
                f"Δ vs {base_mode}": m["test_accuracy"] - base["test_accuracy"],
                "wins/losses": "–" if m is base else "{}/{}".format(*discordant(m, base, root)),
                "McNemar p": None if m is base else mcnemar_p(*discordant(m, base, root)),
                "train_s": m["train_wall_s"],
                "tok/s": m["train_tokens_per_s"],
            }
        )
    teacher = runs[0]["teacher_test"]
    if teacher["n_parsed"]:
        rows.append({"mode": "teacher (few-shot CoT)", "test_acc": teacher["teacher_accuracy_all"]})
    os.makedirs(root, exist_ok=True)
    reporting.write_table(root, rows, floatfmt=".4f")
    summary = seed_summary(runs, root, base_mode) if len(seeds) > 1 else []
    if summary:
        reporting.write_table(root, summary, name="summary.md", floatfmt=".4f")
    Path(root, "comparison.json").write_text(json.dumps(runs, indent=2, default=str) + "\n", encoding="utf-8")
    # One point per (fraction, labels, mode): the mean over seeds.
    points = [
        {
            "train_fraction": key[0],
            "test_accuracy": statistics.fmean(r["test_accuracy"] for r in runs if run_group(r) == key),
            "series": f"{key[1]}-{key[2]}",
        }
        for key in dict.fromkeys(map(run_group, runs))
    ]
    reporting.plot_xy(
        points,
        "train_fraction",
        "test_accuracy",
        "series",
        os.path.join(root, "data_fraction_curve.png"),
        title=f"{script_args.task}: test accuracy vs training data ({script_args.model_name_or_path})",
    )
    report_from_run_dir(root)
    print(reporting.markdown_table(rows, floatfmt=".4f"))
    if summary:
        print(reporting.markdown_table(summary, floatfmt=".4f"))
    return runs


def _finished(run_dir: str) -> bool:
    return all(Path(run_dir, f).is_file() for f in ("metrics.json", "predictions.jsonl"))


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
