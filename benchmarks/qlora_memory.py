"""Peak memory and training speed: 4-bit QLoRA vs fp32 LoRA (and bf16 LoRA on GPU) on the same model and batches.

Each variant runs in a *fresh subprocess* so its peak RSS is its own (a process's high-water mark never goes down).
In every worker: load the model (4-bit NF4 + double quant through bitsandbytes, or full precision), add the same
LoRA adapter (``toolkit.models.students.load_student``), then run ``--warmup`` untimed and ``--steps`` timed
forward/backward/AdamW steps on identical seeded batches. Reported per variant: peak RSS (``resource`` high-water
mark, load included), the training-phase peak (``VmHWM`` reset after loading), RSS after the imports (baseline)
and after loading, the model's weight footprint, on GPU
``torch.cuda.max_memory_allocated``, and tokens/s over the timed steps. The 4-bit/fp32 ratios go in the last rows.

Run (CPU, ~2-4 min for SmolLM2-135M)::

    OMP_NUM_THREADS=1 python benchmarks/qlora_memory.py --model local:smollm2-135m --steps 5 --batch_size 4 \
        --seq_len 256 --output_dir runs/bench/qlora_memory
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def _status_mb(key: str) -> float | None:
    """One ``/proc/self/status`` field in MiB (``RssAnon``: heap/tensors; ``RssFile``: mmapped checkpoint pages)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _trim() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise, inflating RSS)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_mb() -> float:
    """Current resident set size in MiB (``/proc``; psutil when /proc is unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _hwm_mb() -> float | None:
    """Peak RSS since the last :func:`_reset_hwm` (Linux ``VmHWM``), or None where /proc is unavailable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's RSS high-water mark (``echo 5 > /proc/self/clear_refs``), to measure training alone.

    Loading a 4-bit model first materialises full-precision weights and then quantizes them, so the process-wide
    peak is a *loading* peak; the training-phase peak is what QLoRA saves during fine-tuning.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def worker(args) -> dict:
    """Measure one variant in this process; returns the result dict (also printed as JSON on the last line)."""
    import torch

    rss_start = _rss_mb()
    from peft import get_peft_model

    from toolkit.models.students import load_student, lora_config

    torch.manual_seed(args.seed)
    cuda = torch.cuda.is_available()
    t0 = time.perf_counter()
    model, _, _ = load_student(
        args.model,
        quantization="4bit" if args.variant == "qlora-4bit" else None,
        gradient_checkpointing=args.gradient_checkpointing,
        attach_lora=False,
    )
    lora = lora_config(r=args.lora_r)
    if args.variant == "lora-bf16":
        model = model.to(torch.bfloat16)
    elif args.variant == "lora-fp32":
        model = model.to(torch.float32)
    if args.gradient_checkpointing and args.variant != "qlora-4bit":
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = get_peft_model(model, lora)
    device = next(model.parameters()).device
    load_seconds = time.perf_counter() - t0
    _trim()  # loading 4-bit materialises fp32 tensors first; measure what stays resident
    rss_loaded = _rss_mb()
    anon_loaded, file_loaded = _status_mb("RssAnon"), _status_mb("RssFile")
    footprint = model.get_memory_footprint() / 2**20
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4)
    # Same batches for every variant: seeded token ids (vocab ids above the special tokens), full length, no pad.
    gen = torch.Generator().manual_seed(args.seed)
    vocab = model.config.vocab_size
    batches = [
        torch.randint(10, vocab, (args.batch_size, args.seq_len), generator=gen)
        for _ in range(args.warmup + args.steps)
    ]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    hwm_reset = _reset_hwm()
    losses, timed = [], 0.0
    for step, ids in enumerate(batches):
        ids = ids.to(device)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step >= args.warmup:
            timed += time.perf_counter() - start
        losses.append(float(loss))
    tokens = args.steps * args.batch_size * args.seq_len
    return {
        "variant": args.variant,
        "device": str(device),
        "peak_rss_mb": _peak_rss_mb(),
        "train_peak_rss_mb": _hwm_mb() if hwm_reset else None,
        "rss_baseline_mb": rss_start,
        "rss_after_load_mb": rss_loaded,
        "rss_anon_after_load_mb": anon_loaded,
        "rss_file_after_load_mb": file_loaded,
        "weights_footprint_mb": footprint,
        "cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "tokens_per_second": tokens / timed if timed else None,
        "seconds_per_step": timed / args.steps,
        "load_seconds": load_seconds,
        "trainable_params": sum(p.numel() for p in params),
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }


def run_variant(variant: str, args) -> dict:
    """Run one variant in a fresh Python process and parse its JSON result line."""
    cmd = [sys.executable, __file__, "--_worker", variant] + [
        f"--model={args.model}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--batch_size={args.batch_size}",
        f"--seq_len={args.seq_len}",
        f"--lora_r={args.lora_r}",
        f"--seed={args.seed}",
    ]
    if args.gradient_checkpointing:
        cmd.append("--gradient_checkpointing")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"variant {variant} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"variant {variant} printed no result:\n{proc.stdout[-2000:]}")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="local:smollm2-135m")
    parser.add_argument("--variants", nargs="+", default=None, help="qlora-4bit lora-fp32 lora-bf16 (GPU default)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps <= 0 or args.batch_size <= 0 or args.seq_len <= 0:
        parser.error("--steps, --batch_size and --seq_len must be positive")

    if args._worker:
        args.variant = args._worker
        print(json.dumps(worker(args)))
        return []

    from toolkit.configs import cuda_available
    from toolkit.publishing.reporting import markdown_table, write_metrics

    variants = args.variants or (["qlora-4bit", "lora-fp32"] + (["lora-bf16"] if cuda_available() else []))
    unknown = set(variants) - {"qlora-4bit", "lora-fp32", "lora-bf16"}
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    results = []
    for variant in variants:
        print(f"running {variant} ...", flush=True)
        results.append(run_variant(variant, args))
    by = {r["variant"]: r for r in results}
    table = [
        {
            "variant": r["variant"],
            "peak RSS (load+train) MiB": r["peak_rss_mb"],
            "peak RSS training MiB": r["train_peak_rss_mb"],
            "RSS after load MiB (anon / file)": f"{r['rss_after_load_mb']:.0f} ({r['rss_anon_after_load_mb']:.0f} / "
            f"{r['rss_file_after_load_mb']:.0f})"
            if r["rss_anon_after_load_mb"] is not None
            else r["rss_after_load_mb"],
            "baseline RSS MiB": r["rss_baseline_mb"],
            "weights MiB": r["weights_footprint_mb"],
            "CUDA max alloc MiB": r["cuda_max_allocated_mb"],
            "tokens/s": r["tokens_per_second"],
            "s/step": r["seconds_per_step"],
            "loss first→last": f"{r['loss_first']:.3f}→{r['loss_last']:.3f}",
        }
        for r in results
    ]
    ratios = {}
    if "qlora-4bit" in by and "lora-fp32" in by:
        quantized, full = by["qlora-4bit"], by["lora-fp32"]
        ratios = {
            "peak_rss_ratio_4bit_over_fp32": quantized["peak_rss_mb"] / full["peak_rss_mb"],
            "rss_after_load_ratio_4bit_over_fp32": quantized["rss_after_load_mb"] / full["rss_after_load_mb"],
            "weights_ratio_4bit_over_fp32": quantized["weights_footprint_mb"] / full["weights_footprint_mb"],
            "tokens_per_second_ratio_4bit_over_fp32": quantized["tokens_per_second"] / full["tokens_per_second"],
        }
        if quantized["train_peak_rss_mb"] and full["train_peak_rss_mb"]:
            ratios["train_peak_rss_ratio_4bit_over_fp32"] = quantized["train_peak_rss_mb"] / full["train_peak_rss_mb"]
        if quantized["cuda_max_allocated_mb"] and full["cuda_max_allocated_mb"]:
            ratios["cuda_max_allocated_ratio_4bit_over_fp32"] = (
                quantized["cuda_max_allocated_mb"] / full["cuda_max_allocated_mb"]
            )
    text = (
        f"model `{args.model}`, batch {args.batch_size} x {args.seq_len} tokens, {args.steps} timed steps "
        f"(+{args.warmup} warmup), LoRA r={args.lora_r}, gradient checkpointing={args.gradient_checkpointing}\n\n"
        + markdown_table(table)
        + "\n"
        + markdown_table([{"ratio": k, "value": v} for k, v in ratios.items()], floatfmt=".3f")
    )
    print(text)
    if args.output_dir:
        out = Path(args.output_dir)
        write_metrics(out, {"config": vars(args), "results": results, "ratios": ratios}, name="qlora_memory.json")
        (out / "qlora_memory.md").write_text(text, encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
