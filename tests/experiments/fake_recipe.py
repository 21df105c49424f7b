"""A recipe stand-in with the recipes' public interface (``make_parser``, ``main``, ``python -m``): it writes
``metrics.json`` (with a dev curve) and ``predictions.jsonl`` whose rows are right with probability ``quality``.

``--long_format true`` writes one row per (model, task, test id) instead, as the multi-task recipe does: models
``multitask`` (right with probability ``quality``) and ``single`` (``single_quality``), tasks ``snips`` and
``slurp``, the same ids in every (model, task) and the single model's rows in reverse order. A test row is right for
both models when it is right at the lower quality (the same draw per row), so equal qualities give equal rows."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.configs import make_parser as toolkit_parser


@dataclass
class FakeArguments:
    output_dir: str = field(metadata={"help": "Run directory."})
    quality: float = field(default=0.5, metadata={"help": "Chance that a test row is answered right."})
    rows: int = field(default=40, metadata={"help": "Test rows."})
    max_steps: int = field(default=10, metadata={"help": "Recorded only."})
    seed: int = field(default=0, metadata={"help": "Training seed."})
    data_seed: int = field(default=0, metadata={"help": "Data-order seed."})
    sleep: float = field(default=0.0, metadata={"help": "Seconds to 'train' (a run a test can kill)."})
    calls_file: str = field(default="", metadata={"help": "Append the output_dir here on every start."})
    long_format: bool = field(default=False, metadata={"help": "One row per (model, task, test id)."})
    single_quality: float = field(default=0.5, metadata={"help": "The long format's single model's quality."})


def make_parser():
    return toolkit_parser([FakeArguments])


def main(args: FakeArguments) -> dict:
    if args.calls_file:
        with open(args.calls_file, "a", encoding="utf-8") as calls:
            calls.write(args.output_dir + "\n")
    time.sleep(args.sleep)
    rng = random.Random(args.seed * 1000 + int(args.quality * 100))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": f"r{i}", "prediction": "x", "correct": rng.random() < args.quality, "seed": args.seed}
        for i in range(args.rows)
    ]
    if args.long_format:
        rows = long_rows(args)
    (out / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    curve = [{"step": step, "dev_loss": 1.0 / step + (0.001 if step == 40 else 0)} for step in (10, 20, 40, 80)]
    metrics = {
        "max_steps": args.max_steps,
        "data_seed": args.data_seed,
        "dev_curve": curve,
        "table": [{"method": "fake", "accuracy": sum(r.get("correct", False) for r in rows) / len(rows)}],
    }
    (out / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return metrics


def long_rows(args: FakeArguments) -> list[dict]:
    """Long-format rows: ids repeat across models and tasks; the answer is in ``intent_prediction``."""
    rows = []
    for task in ("snips", "slurp"):
        rng = random.Random(f"{args.seed}-{task}")
        draws = [rng.random() for _ in range(args.rows)]
        for model, quality in (("multitask", args.quality), ("single", args.single_quality)):
            ordered = list(enumerate(draws))
            for i, draw in ordered if model == "multitask" else reversed(ordered):
                answer = "gold" if draw < quality else "wrong"
                rows.append({"model": model, "task": task, "id": f"{task}-{i}", "intent_prediction": answer})
    for row in rows:
        row |= {"gold": "gold", "seed": args.seed}
    return rows


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
