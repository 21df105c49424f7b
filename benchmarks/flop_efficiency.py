"""FLOP efficiency and peak memory: this machine's fp32 matmul rate next to what training and decoding achieve.

Rows (each in its own subprocess, so every peak RSS is that row's alone):

* ``matmul`` — a large fp32 ``torch.mm`` (n x n x n), 2·n³ FLOPs: the rate the machine reaches on pure matmul.
* ``lora_*`` — LMCor corrector LoRA steps (SmolLM2-135M, r=16, all-linear) on ``--batch`` rows of ``--seq_len``
  tokens whose last ``--target_len`` are the target (the JFLEG config: batch 8 x up to 320 tokens), through the
  ``Trainer`` (AdamW); variants: full-vocabulary logits on every position with eager or SDPA attention (before),
  logits on target positions only (``toolkit.training.target_loss``, what ``student_training.make_trainer`` uses now), that with
  glibc's heap tuned (``toolkit.training.allocator``: freed memory returned to the OS, paid in page faults), with activation
  checkpointing of every layer / every 2nd layer (``make_trainer`` then tunes the heap by default), in micro-batches
  of 2 with gradient accumulation (same update), and with ``lora_dropout=0`` (PEFT's dropout keeps a dropped copy
  of every adapted layer's input for backward); opt-in, the same through ``torch.compile`` (``*_compile``).
* ``full_ft`` — the same step training every weight.
* ``teacher_decode`` — the hf teacher's model decoding ``--decode_tokens`` tokens for ``--decode_batch`` prompts
  (prefill timed separately and subtracted).

FLOPs are counted, not measured: a forward pass is ``2·N_body·T + 2·V·H·T_head + 2·layers·H·Σ L²`` (matmul weights
of the transformer blocks over all T tokens, the LM head over the T_head positions it runs on — all positions, or the
target positions only — and causal attention scores + weighted sum). Full fine-tuning = 3 x forward (the 6·N·T rule).
LoRA = 2 x forward: the backward pass needs activation gradients through the frozen weights (as many FLOPs as the
forward) but no weight gradients; the adapters' own FLOPs (< 1 %) are left out. Decoding = a forward per token with
attention over the growing context. ``--profile ROW ...`` adds one profiled step to those rows and reports where the CPU
time goes (matmul / attention / softmax + cross-entropy / dropout / optimizer / other).

    python benchmarks/flop_efficiency.py                         # every row, SmolLM2-135M, 3 timed steps
    python benchmarks/flop_efficiency.py --rows matmul lora_target_only --steps 2 --profile lora_target_only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

TRAIN_ROWS = {
    # name: (lora, lora_dropout, target-only loss, attention, checkpoint every n layers (0 = off),
    #        glibc heap tuned (toolkit.training.allocator), description)
    "lora_full_logits_eager": (True, 0.05, False, "eager", 0, False, "LoRA, full logits, eager attention (before)"),
    "lora_full_logits_sdpa": (True, 0.05, False, "sdpa", 0, False, "LoRA, full logits, SDPA"),
    "lora_target_only": (True, 0.05, True, "sdpa", 0, False, "LoRA, target-only logits, SDPA (now, default)"),
    "lora_target_only_tuned": (True, 0.05, True, "sdpa", 0, True, "now + heap tuning"),
    "lora_target_only_ckpt": (True, 0.05, True, "sdpa", 1, True, "now + checkpoint every layer (+ heap tuning)"),
    "lora_target_only_ckpt2": (True, 0.05, True, "sdpa", 2, True, "now + checkpoint every 2nd layer (+ heap tuning)"),
    "lora_target_only_mb2": (True, 0.05, True, "sdpa", 0, False, "now, micro-batches of 2 x 4 accumulation steps"),
    "lora_target_only_nodrop": (True, 0.0, True, "sdpa", 0, False, "now with lora_dropout=0"),
    "lora_target_only_compile": (True, 0.05, True, "sdpa", 0, False, "now + torch.compile (inductor, Trainer)"),
    "lora_target_only_nodrop_compile": (True, 0.0, True, "sdpa", 0, False, "lora_dropout=0 + torch.compile"),
    "full_ft": (False, 0.0, True, "sdpa", 0, False, "full fine-tune, target-only logits, SDPA"),
}
# Rows that split each optimizer step of --batch rows into micro-batches (gradient accumulation; the Trainer
# normalises the loss over the whole accumulated batch, so the update is the same).
MICRO_BATCH = {"lora_target_only_mb2": 2}
# Rows trained through the Trainer's ``torch_compile`` (inductor; the first, compiling step is the untimed warm-up).
COMPILED = {"lora_target_only_compile", "lora_target_only_nodrop_compile"}
ALL_ROWS = ["matmul", *TRAIN_ROWS, "teacher_decode"]
# "full logits, SDPA" sits between before and now; it needs as much memory as before, so it is opt-in. The compiled
# rows spend minutes compiling before their first step, so they are opt-in too.
DEFAULT_ROWS = [r for r in ALL_ROWS if r != "lora_full_logits_sdpa" and r not in COMPILED]
PROFILE_GROUPS = {
    "matmul": ("mm", "addmm", "bmm", "matmul", "linear", "baddbmm"),
    "attention": ("scaled_dot_product", "flash_attention", "efficient_attention"),
    "softmax+CE": ("softmax", "log_softmax", "nll_loss", "cross_entropy"),
    "optimizer": ("foreach", "addcdiv", "lerp", "adam"),
    "dropout": ("bernoulli", "dropout", "native_dropout"),
}


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def model_dims(model) -> dict:
    """Parameter counts the FLOP formulas need (N_body: matmul weights of the blocks; V·H: the LM head)."""
    from toolkit.training.target_loss import output_head

    cfg = model.config
    head = output_head(model)
    head_params = head.weight.numel()
    layers = [m for n, m in model.named_modules() if n.endswith("layers")][0]
    body = sum(p.numel() for n, p in layers.named_parameters() if p.dim() == 2 and "lora_" not in n)
    return {
        "n_body": body,
        "n_head": head_params,
        "layers": cfg.num_hidden_layers,
        "attn_width": cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads),
    }


def forward_flops(dims: dict, tokens: int, head_positions: int, sum_sq_len: float) -> float:
    return (
        2 * dims["n_body"] * tokens
        + 2 * dims["n_head"] * head_positions
        + 2 * dims["layers"] * dims["attn_width"] * sum_sq_len
    )


# ---------------------------------------------------------------------------------------------------------------
# Rows (run in a child process)
# ---------------------------------------------------------------------------------------------------------------
def row_matmul(args) -> dict:
    import torch

    size = args.matmul_n
    left, right = torch.randn(size, size), torch.randn(size, size)
    torch.mm(left, right)  # warm-up
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < 3.0:
        torch.mm(left, right)
        reps += 1
    seconds = time.perf_counter() - t0
    return {
        "what": f"torch.mm fp32 {size}x{size}x{size}",
        "gflop_per_s": 2 * size**3 * reps / seconds / 1e9,
        "seconds": seconds,
    }


def _features(vocab: int, args) -> list[dict]:
    import random

    rng = random.Random(0)
    feats = []
    for _ in range(args.batch * (args.steps + 2)):
        ids = [rng.randrange(10, vocab) for _ in range(args.seq_len)]
        labels = [-100] * (args.seq_len - args.target_len) + ids[-args.target_len :]
        feats.append({"input_ids": ids, "attention_mask": [1] * args.seq_len, "labels": labels})
    return feats


def row_train(name: str, args) -> dict:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from toolkit.models import students
    from toolkit.training import student_training

    lora, dropout, target_only, attn, every_n, tuned_heap, desc = TRAIN_ROWS[name]
    model, tok, _ = students.load_student(args.model, lora=lora, lora_r=16, lora_dropout=dropout)
    model.set_attn_implementation(attn)
    rss_loaded = peak_rss_mb()
    dims = model_dims(model)
    profile = name in args.profile
    micro = MICRO_BATCH.get(name, args.batch)
    total_steps = 1 + args.steps + (1 if profile else 0)
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="flops-"),
        max_steps=total_steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=args.batch // micro,
        learning_rate=1e-4,
        report_to=[],
        save_strategy="no",
        logging_steps=10**6,
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
        activation_checkpointing=bool(every_n),
        activation_checkpointing_kwargs={"every_n_layers": every_n} if every_n else None,
        torch_compile=name in COMPILED,
    )
    feats = _features(model.config.vocab_size, args)
    if target_only:
        trainer = student_training.make_trainer(model, tok, training_args, feats, return_freed_memory=tuned_heap)
    else:
        training_args.remove_unused_columns = False
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=feats,
            data_collator=student_training.PairCollator(pad_token_id=tok.pad_token_id),
        )
    times, cpu, prof_box = [], [], {}

    class Timer(TrainerCallback):
        def on_step_begin(self, _args, state, control, **kw):
            self.t0, self.cpu0 = time.perf_counter(), _cpu_s()
            if profile and state.global_step == total_steps - 1:
                prof_box["p"] = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                prof_box["p"].__enter__()

        def on_step_end(self, _args, state, control, **kw):
            if "p" in prof_box and state.global_step == total_steps:
                prof_box["p"].__exit__(None, None, None)
            else:
                times.append(time.perf_counter() - self.t0)
                cpu.append(_cpu_s() - self.cpu0)

    trainer.add_callback(Timer())
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    trainer.train()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    timed = times[1:]  # the first step warms up allocator and kernels
    tokens = args.batch * args.seq_len
    n_targets = args.batch * (args.target_len - 1)  # the last target token predicts nothing
    fwd = forward_flops(dims, tokens, n_targets if target_only else tokens, args.batch * args.seq_len**2 / 2)
    # Recomputing the checkpointed layers' forward in backward is extra work, not useful FLOPs: not counted.
    step_flops = (2 if lora else 3) * fwd
    step_s = sum(timed) / len(timed)
    out = {
        "what": desc,
        "gflop_per_s": step_flops / step_s / 1e9,
        "tokens_per_s": tokens / step_s,
        "step_s": step_s,
        # CPU seconds (user + system, all threads) per step: unlike wall time, barely moved by other processes.
        "cpu_s_per_step": sum(cpu[1:]) / len(cpu[1:]),
        "rss_after_load_mb": rss_loaded,
        # Fresh pages the kernel had to hand out (and zero): the cost side of returning freed memory to the OS.
        "page_faults_per_step": faults / total_steps,
        "flops_per_step": step_flops,
        "lm_head_share_%": 100 * 2 * dims["n_head"] * (n_targets if target_only else tokens) / fwd,
    }
    if "p" in prof_box:
        out["profile"] = _profile_groups(prof_box["p"])
    return out


def _profile_groups(prof) -> dict:
    """Self CPU time per op group (percent of all self time) and the top ops."""
    totals: dict[str, float] = {}
    ops = []
    for evt in prof.key_averages():
        self_time = evt.self_cpu_time_total
        key = evt.key.removeprefix("aten::").lstrip("_")
        group = next((g for g, pats in PROFILE_GROUPS.items() if any(key.startswith(p) for p in pats)), "other")
        totals[group] = totals.get(group, 0.0) + self_time
        ops.append((self_time, evt.key))
    whole = sum(totals.values()) or 1.0
    ops.sort(reverse=True)
    return {
        "groups_%": {g: round(100 * t / whole, 1) for g, t in sorted(totals.items(), key=lambda kv: -kv[1])},
        "top_ops_%": [(k, round(100 * t / whole, 1)) for t, k in ops[:8]],
    }


def row_teacher_decode(args) -> dict:
    import torch

    from toolkit.models.loading import load_causal_lm

    model = load_causal_lm(args.model)
    rss_loaded = peak_rss_mb()
    dims = model_dims(model)
    batch, prompt_len, new_tokens = args.decode_batch, args.decode_prompt_len, args.decode_tokens
    ids = torch.randint(10, model.config.vocab_size, (batch, prompt_len))
    common = {
        "do_sample": False,
        "pad_token_id": model.generation_config.pad_token_id or 0,
        "top_k": None,
        "top_p": None,
    }
    with torch.inference_mode():
        model.generate(ids[:, :16], max_new_tokens=2, min_new_tokens=2, **common)  # warm-up
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **common)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **common)
        total = time.perf_counter() - t0
    decode_s = total - prefill
    # new_tokens - 1 decode forwards of batch tokens, each attending to prompt_len + 1 .. prompt_len + new_tokens - 1.
    steps = new_tokens - 1
    ctx = sum(prompt_len + i for i in range(1, new_tokens))
    flops = (
        2 * (dims["n_body"] + dims["n_head"]) * batch * steps + 4 * dims["layers"] * dims["attn_width"] * batch * ctx
    )
    return {
        "what": f"teacher greedy decode, batch {batch}, prompt {prompt_len}, {new_tokens} new tokens",
        "gflop_per_s": flops / decode_s / 1e9,
        "tokens_per_s": batch * steps / decode_s,
        "step_s": decode_s / steps,
        "rss_after_load_mb": rss_loaded,
        "prefill_s": prefill,
    }


def run_row(name: str, args) -> dict:
    import torch

    if name == "matmul":
        out = row_matmul(args)
    elif name == "teacher_decode":
        out = row_teacher_decode(args)
    else:
        out = row_train(name, args)
    return {"row": name, "threads": torch.get_num_threads(), **out, "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------------------------------------------------------
# Parent: one subprocess per row, then the table
# ---------------------------------------------------------------------------------------------------------------
def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local:smollm2-135m")
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, choices=ALL_ROWS)
    parser.add_argument("--steps", type=int, default=3, help="Timed training steps per row (after 1 warm-up).")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=320)
    parser.add_argument("--target_len", type=int, default=32, help="Target tokens at the end of each row.")
    parser.add_argument("--matmul_n", type=int, default=2048)
    parser.add_argument("--decode_batch", type=int, default=16)
    parser.add_argument("--decode_prompt_len", type=int, default=160)
    parser.add_argument("--decode_tokens", type=int, default=32)
    parser.add_argument(
        "--profile", nargs="*", default=[], choices=list(TRAIN_ROWS), help="Training rows to profile (1 extra step)."
    )
    parser.add_argument("--out", default=None, help="Optional dir for results.md / metrics.json.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        from toolkit.configs import setup_logging

        setup_logging()
        print("ROW_JSON " + json.dumps(run_row(args.child, args)), flush=True)
        return []
    rows = []
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    for name in args.rows:
        cmd = [sys.executable, os.path.abspath(__file__), *_strip_rows(passthrough), "--child", name]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW_JSON ")]
        if proc.returncode or not lines:
            print(f"row {name} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[-1][len("ROW_JSON ") :]))
        print(f"done: {name}", file=sys.stderr, flush=True)
    return report(rows, args)


def _strip_rows(argv: list[str]) -> list[str]:
    """The parent's arguments minus ``--rows ...`` (the child gets one row through ``--child``)."""
    out, skipping = [], False
    for arg in argv:
        if arg == "--rows" or arg.startswith("--rows="):
            skipping = True
            continue
        if skipping and not arg.startswith("--"):
            continue
        skipping = False
        out.append(arg)
    return out


def report(rows: list[dict], args) -> list[dict]:
    from toolkit.publishing import reporting

    peak = next((r["gflop_per_s"] for r in rows if r["row"] == "matmul"), None)
    for row in rows:
        row["%_of_matmul"] = 100 * row["gflop_per_s"] / peak if peak else None
    columns = ["row", "what", "threads", "gflop_per_s", "%_of_matmul", "tokens_per_s", "step_s", "peak_rss_mb"]
    columns += ["cpu_s_per_step", "page_faults_per_step"]
    print(
        f"\nmodel={args.model} batch={args.batch} seq_len={args.seq_len} target_len={args.target_len} "
        f"timed steps={args.steps} cpu_count={os.cpu_count()} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}\n"
    )
    print(reporting.markdown_table(rows, columns=columns))
    for row in rows:
        if "lm_head_share_%" in row:
            print(
                f"- {row['row']}: LM head = {row['lm_head_share_%']:.0f}% of forward FLOPs; RSS after load {row['rss_after_load_mb']:.0f} MB"
            )
        if "profile" in row:
            print(
                f"  profile (self CPU time): {row['profile']['groups_%']}; top ops {row['profile']['top_ops_%'][:5]}"
            )
    if args.out:
        reporting.write_table(args.out, rows, columns=columns)
        reporting.write_metrics(args.out, {"args": vars(args), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
