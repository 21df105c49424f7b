"""Generation throughput: toolkit engine vs plain loops.

    python benchmarks/generation_throughput.py                     # both parts, defaults below
    python benchmarks/generation_throughput.py --skip_hf --n_prompts 500

Part 1 (API): the fake OpenAI-compatible server runs in its own process with a fixed latency. The toolkit's
``openai`` teacher + cache + engine (``run_generation``) and a plain ``AsyncOpenAI`` + ``asyncio.Semaphore``
loop each send ``n_prompts`` requests with ``n`` choices at ``concurrency``; the ideal rate is
``concurrency / latency``. The re-run of the toolkit job is fully cached (0 requests).

Part 2 (local HF): the ``hf`` teacher's batched sampling (``num_return_sequences``, length-sorted batches)
vs a per-example ``model.generate`` loop (one prompt, one sample per call) on the same model and prompts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes + toolkit from a checkout


def _api_part(args) -> list[dict]:
    import openai

    from tests.fakes.openai_server import start_server_process
    from toolkit.cache import GenerationCache
    from toolkit.generation import WorkItem, run_generation
    from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher

    server = start_server_process(latency=args.latency)
    ideal = args.concurrency / args.latency
    rows = []
    try:
        prompts = [f"Correct this sentence number {i}: she go to school ." for i in range(args.n_prompts)]

        async def plain() -> None:
            client = openai.AsyncOpenAI(base_url=server.base_url, api_key="bench", max_retries=0)
            sem = asyncio.Semaphore(args.concurrency)

            async def one(p: str):
                async with sem:
                    return await client.completions.create(model="fake", prompt=p, n=args.n, max_tokens=16, seed=0)

            await asyncio.gather(*(one(p) for p in prompts))
            await client.close()

        asyncio.run(plain())  # warm-up connection setup / imports on both sides, not measured
        count0 = server.request_count()
        t0 = time.perf_counter()
        asyncio.run(plain())
        plain_s = time.perf_counter() - t0
        assert server.request_count() - count0 == args.n_prompts
        rows.append(_row("plain AsyncOpenAI + semaphore", args.n_prompts, plain_s, ideal))

        cfg = TeacherConfig(
            backend="openai", model="fake", base_url=server.base_url, api_key="bench", max_concurrency=args.concurrency
        )
        teacher = load_teacher(cfg)
        items = [
            WorkItem(str(i), [GenerationRequest(prompt=p, n=args.n, max_tokens=16, seed=0, temperature=0.7)])
            for i, p in enumerate(prompts)
        ]
        with tempfile.TemporaryDirectory() as tmp, GenerationCache(Path(tmp) / "c.sqlite") as cache:
            count0 = server.request_count()
            t0 = time.perf_counter()
            _, summary = run_generation(items, teacher, cache, progress=False)
            toolkit_s = time.perf_counter() - t0
            sent = server.request_count() - count0
            assert summary.completed == args.n_prompts and sent == args.n_prompts, (summary, sent)
            rows.append(_row("toolkit openai teacher + cache + engine", args.n_prompts, toolkit_s, ideal))
            count0 = server.request_count()
            t0 = time.perf_counter()
            _, summary = run_generation(items, teacher, cache, progress=False)
            cached_s = time.perf_counter() - t0
            resent = server.request_count() - count0
        rows.append(
            {
                "setup": f"toolkit re-run, fully cached ({resent} requests sent)",
                "requests": args.n_prompts,
                "seconds": cached_s,
                "req_per_s": args.n_prompts / cached_s,
                "ideal_req_per_s": None,
                "ratio_to_ideal": None,
            }
        )
    finally:
        server.stop()
    return rows


def _row(name: str, n: int, seconds: float, ideal: float) -> dict:
    rate = n / seconds
    return {
        "setup": name,
        "requests": n,
        "seconds": seconds,
        "req_per_s": rate,
        "ideal_req_per_s": ideal,
        "ratio_to_ideal": rate / ideal,
    }


def _hf_part(args) -> tuple[list[dict], str]:
    import torch

    from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher

    model_name, note = args.hf_model, "SmolLM2-135M-Instruct (toolkit.models local default)"
    try:
        from toolkit.models import resolve_model

        resolve_model(model_name)
    except Exception as exc:  # noqa: BLE001 - fall back to a tiny random model and say so
        from tests.fakes.tiny_models import build_tiny_llama

        model_name = str(build_tiny_llama(Path(tempfile.mkdtemp()) / "tiny"))
        note = f"TINY random Llama (SmolLM2 unavailable: {exc})"
    teacher = load_teacher(TeacherConfig(backend="hf", model=model_name, batch_size=args.hf_prompts)).load()
    sources = [
        "she go to school every day .",
        "I has two brother and one sister .",
        "He do n't like apples .",
        "They was happy yesterday .",
        "My freind live in london .",
        "We is going to the park tomorow .",
        "The informations are useful for us .",
        "She can sings very good .",
    ]
    prompts = [
        f"Correct the grammar.\nSentence: {sources[i % len(sources)]}\nCorrected:" for i in range(args.hf_prompts)
    ]
    reqs = [
        GenerationRequest(prompt=p, n=args.n, temperature=0.7, max_tokens=args.hf_max_tokens, seed=0) for p in prompts
    ]
    teacher.generate(reqs[:1])  # warm-up
    t0 = time.perf_counter()
    out = teacher.generate(reqs)
    batched_s = time.perf_counter() - t0
    batched_tokens = sum(g.usage.completion_tokens for o in out for g in o)

    tok, model = teacher.tokenizer, teacher.model
    t0 = time.perf_counter()
    loop_tokens = 0
    torch.manual_seed(0)
    with torch.inference_mode():
        for p in prompts:
            enc = tok(p, return_tensors="pt")
            for _ in range(args.n):
                gen = model.generate(
                    **enc, do_sample=True, temperature=0.7, top_p=1.0, top_k=0,
                    max_new_tokens=args.hf_max_tokens, pad_token_id=tok.pad_token_id,
                )  # fmt: skip
                loop_tokens += gen.shape[1] - enc["input_ids"].shape[1]
    loop_s = time.perf_counter() - t0
    n_samples = len(prompts) * args.n
    rows = [
        {"setup": "per-example generate loop", "samples": n_samples, "seconds": loop_s, "gen_tokens": loop_tokens,
         "samples_per_s": n_samples / loop_s, "tokens_per_s": loop_tokens / loop_s, "speedup": 1.0},
        {"setup": "hf teacher, batched sampling", "samples": n_samples, "seconds": batched_s, "gen_tokens": batched_tokens,
         "samples_per_s": n_samples / batched_s, "tokens_per_s": batched_tokens / batched_s,
         "speedup": loop_s / batched_s},
    ]  # fmt: skip
    return rows, note


def _print(rows: list[dict]) -> None:
    from toolkit.reporting import markdown_table

    fmt = [
        {k: (f"{v:.3g}" if isinstance(v, float) else ("-" if v is None else v)) for k, v in r.items()} for r in rows
    ]
    print(markdown_table(fmt))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_prompts", type=int, default=2000)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--hf_model", default="local:smollm2-135m")
    parser.add_argument("--hf_prompts", type=int, default=8)
    parser.add_argument("--hf_max_tokens", type=int, default=16)
    parser.add_argument("--skip_api", action="store_true")
    parser.add_argument("--skip_hf", action="store_true")
    args = parser.parse_args()
    if not args.skip_api:
        print(
            f"## API: {args.n_prompts} prompts x n={args.n}, concurrency {args.concurrency}, latency {args.latency}s\n"
        )
        _print(_api_part(args))
    if not args.skip_hf:
        rows, note = _hf_part(args)
        print(
            f"\n## Local HF: {args.hf_prompts} prompts x n={args.n}, {args.hf_max_tokens} new tokens; model: {note}\n"
        )
        _print(rows)


if __name__ == "__main__":
    main()
