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
    OMP_NUM_THREADS=1 python -m recipes.compare_step_by_step --config recipes/configs/step_by_step/svamp.yaml \
        --output_dir runs/sbs-svamp --label_sources gt llm --train_fractions 0.5 1.0 --seeds 0 1 2
    # or: accelerate launch -m recipes.compare_step_by_step --config ... (same flags; run from the repo root)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from recipes import step_by_step as recipe
from toolkit import configs
from toolkit.distributed import is_main_process
from toolkit.methods.step_by_step.comparison import write_comparison
from toolkit.methods.step_by_step.config import LABEL_SOURCES, MODES
from toolkit.publishing import reporting
from toolkit.publishing.report_artifacts import report_from_run_dir
from toolkit.runtime import configure_threads

logger = logging.getLogger(__name__)


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
        metadata={
            "help": "Training seeds: every run repeats per seed (mean ± std, McNemar pooled over seeds). "
            "Default: one run with the TrainingArguments seed."
        },
    )
    skip_finished: bool = field(
        default=False, metadata={"help": "Reuse runs whose metrics.json and predictions.jsonl exist (resume)."}
    )

    def __post_init__(self):
        if not self.modes or any(mode not in MODES for mode in self.modes):
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {self.modes}")
        if not self.label_sources or any(source not in LABEL_SOURCES for source in self.label_sources):
            raise ValueError(f"label_sources must be a non-empty subset of {LABEL_SOURCES}, got {self.label_sources}")
        if not self.train_fractions or any(not 0 < fraction <= 1 for fraction in self.train_fractions):
            raise ValueError(f"train_fractions must be in (0, 1], got {self.train_fractions}")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")


def make_parser():
    return configs.make_parser([recipe.StepByStepArguments, TrainingArguments, CompareArguments])


def finished(run_dir: str) -> bool:
    return all(Path(run_dir, name).is_file() for name in ("metrics.json", "predictions.jsonl"))


def main(script_args, training_args: TrainingArguments, compare_args: CompareArguments) -> list[dict]:
    configs.setup_logging()
    configure_threads()
    root = training_args.output_dir
    if training_args.push_to_hub:
        logger.warning("compare_step_by_step does not push (one repo per run would collide); use the recipe")

    # ---- Runs: every (fraction, labels, mode, seed) with the same student, data and steps ----
    runs: list[dict] = []
    seeds = compare_args.seeds or [training_args.seed]
    for fraction in compare_args.train_fractions:
        for source in compare_args.label_sources:
            for mode in compare_args.modes:
                for seed in seeds:
                    name = f"{source}-{mode}-f{fraction:g}" + (f"-s{seed}" if compare_args.seeds else "")
                    run_dir = os.path.join(root, name)
                    if compare_args.skip_finished and finished(run_dir):
                        logger.info("==== run %s: reusing %s ====", name, run_dir)
                        runs.append({"run": name, **json.loads(Path(run_dir, "metrics.json").read_text())})
                        continue
                    logger.info("==== run %s ====", name)
                    run_args = dataclasses.replace(
                        script_args, mode=mode, label_source=source, train_fraction=fraction
                    )
                    run_training_args = dataclasses.replace(
                        training_args, output_dir=run_dir, push_to_hub=False, seed=seed
                    )
                    runs.append({"run": name, **recipe.main(run_args, run_training_args)})

    # ---- Finish: paired comparison tables and the data-fraction curve (main process) ----
    if not is_main_process():
        return runs
    title = f"{script_args.task}: test accuracy vs training data ({script_args.model_name_or_path})"
    tables = write_comparison(root, runs, compare_args.modes[0], title)
    report_from_run_dir(root)
    print(reporting.markdown_table(tables["rows"], floatfmt=".4f"))
    if tables["summary"]:
        print(reporting.markdown_table(tables["summary"], floatfmt=".4f"))
    return runs


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
