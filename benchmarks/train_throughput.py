"""Training throughput of the LMCor data pipeline vs fixed max-length padding, same model, same rows, one run.

Pipelines (each trains ``--steps`` optimizer steps with the same ``transformers.Trainer`` settings):

* ``fixed max-length`` — every batch padded to ``--max_len`` in random order (what the seed code did:
  ``padding="max_length"`` at tokenization time),
* ``dynamic`` — each batch padded to its longest row, random order,
* ``dynamic + length-grouped`` — the recipe's pipeline: dynamic padding and
  ``train_sampling_strategy="group_by_length"`` (batches of similar length).

Real tokens/s counts non-padding tokens only (the work that matters); padding waste is the share of padded
positions in all positions the model computed.

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py                    # WMT22 pool, SmolLM2 + LoRA
    python benchmarks/train_throughput.py --model /path/to/tiny --pool demo_gec --steps 5
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time

from toolkit.configs import setup_logging
from toolkit.methods.lmcor.data import load_pool
from toolkit.methods.lmcor.formats import CorrectorFormat, build_training_examples
from toolkit.models import students
from toolkit.publishing import reporting
from toolkit.training import student_training

logger = logging.getLogger("train_throughput")


class CountingCollator(student_training.PairCollator):
    """Dynamic/fixed collator that also records real and padded token positions per collated batch.

    The Trainer's dataloader may collate one batch ahead of the last optimizer step, so only the first ``steps``
    records are counted (``dataloader_num_workers=0``: batches are collated in training order).
    """

    def __call__(self, features):
        batch = super().__call__(features)
        self.__dict__.setdefault("records", []).append(student_training.padding_stats(batch))
        return batch

    def totals(self, steps: int) -> tuple[int, int]:
        used = self.__dict__.get("records", [])[:steps]
        return sum(r["real_tokens"] for r in used), sum(r["padded_tokens"] for r in used)


def build_examples(pool: str, num_rows: int, seed: int, max_source_words: int | None = None) -> list[dict]:
    """Corrector examples from a real pool (WMT22 en-de, 4 systems) or the shipped demo set (fake candidates)."""
    fmt = CorrectorFormat(separator=" || ")
    if pool == "wmt22_ende":
        rows = load_pool("wmt22_ende")
        if max_source_words:
            rows = [r for r in rows if len(r["source"].split()) <= max_source_words]
    else:
        rows = load_pool("demo_gec")
        # No teacher in a benchmark: use the source and references as stand-in candidates (lengths are realistic).
        rows = [{**r, "candidates": [r["source"], *r["references"], r["source"].lower()]} for r in rows]
    rows = random.Random(seed).sample(rows, min(num_rows, len(rows)))
    return build_training_examples(rows, fmt, k=4, seed=seed, multi_reference=False)


def run_pipeline(name, model_name, lora, feats, args, *, pad_to, grouped) -> dict:
    from transformers import TrainingArguments

    model, tokenizer, _ = students.load_student(model_name, lora=lora, lora_r=16)
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="tp-"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-4,
        report_to=[],
        save_strategy="no",
        logging_steps=args.steps,
        use_cpu=True,
        seed=args.seed,
        train_sampling_strategy="group_by_length" if grouped else "random",
        disable_tqdm=True,
    )
    trainer = student_training.make_trainer(model, tokenizer, training_args, feats)
    collator = CountingCollator(pad_token_id=tokenizer.pad_token_id, pad_to=pad_to)
    trainer.data_collator = collator
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    real, total = collator.totals(args.steps)
    return {
        "pipeline": name,
        "steps": args.steps,
        "wall_s": wall,
        "real_tokens": real,
        "computed_positions": total,
        "real_tokens_per_s": real / wall,
        "padding_waste_%": 100 * (1 - real / total),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local:smollm2-135m")
    parser.add_argument("--lora", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--pool", default="wmt22_ende", choices=["wmt22_ende", "demo_gec"])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--max_source_words", type=int, default=15, help="As in the wmt22_ende config (0 = all).")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_len", type=int, default=384, help="Fixed padding length (and truncation cap).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="Optional dir for results.md / metrics.json.")
    args = parser.parse_args(argv)
    setup_logging()

    _, tokenizer, seq2seq = students.load_student(args.model)
    examples = build_examples(args.pool, args.rows, args.seed, args.max_source_words)
    feats = student_training.tokenize_pairs(
        examples,
        tokenizer,
        is_seq2seq=seq2seq,
        max_source_len=args.max_len - 64,
        max_target_len=64,
        chat_template=False,
    )
    lengths = sorted(len(f["input_ids"]) for f in feats)
    logger.info(
        "%d examples, length min/median/max %d/%d/%d", len(feats), lengths[0], lengths[len(lengths) // 2], lengths[-1]
    )
    pad_to = max(args.max_len, lengths[-1])
    # Untimed warm-up (allocator, kernels, lazy imports) so the first timed pipeline is not penalised.
    warm = argparse.Namespace(**{**vars(args), "steps": 1})
    run_pipeline("warm-up", args.model, args.lora, feats[: args.batch_size], warm, pad_to=None, grouped=False)
    rows = [
        run_pipeline("fixed max-length (seed code)", args.model, args.lora, feats, args, pad_to=pad_to, grouped=False),
        run_pipeline("dynamic padding", args.model, args.lora, feats, args, pad_to=None, grouped=False),
        run_pipeline(
            "dynamic + length-grouped (recipe)", args.model, args.lora, feats, args, pad_to=None, grouped=True
        ),
    ]
    base = rows[0]["real_tokens_per_s"]
    for row in rows:
        row["speedup"] = row["real_tokens_per_s"] / base
    columns = [
        "pipeline",
        "steps",
        "wall_s",
        "real_tokens",
        "computed_positions",
        "real_tokens_per_s",
        "padding_waste_%",
        "speedup",
    ]
    print(
        f"\nmodel={args.model} lora={args.lora} pool={args.pool} max_source_words={args.max_source_words} "
        f"rows={len(feats)} batch={args.batch_size} fixed_len={pad_to}\n"
    )
    print(reporting.markdown_table(rows, columns=columns))
    if args.out:
        reporting.write_table(args.out, rows, columns=columns)
        reporting.write_metrics(args.out, {"args": vars(args), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
