"""Generation throughput: toolkit engine vs plain loops.

    python benchmarks/generation_throughput.py                     # both parts, defaults below
    python benchmarks/generation_throughput.py --skip_hf --n_prompts 500 --latencies 0.05 --repeats 2

Part 1 (API): the fake OpenAI-compatible server runs in its own process with a fixed latency. For each latency,
these clients send ``n_prompts`` requests with ``n`` choices at ``concurrency``, interleaved (ABBA order)
``--repeats`` times in one process, best run of each reported (load from other jobs hits all alike):

- plain ``AsyncOpenAI`` + ``asyncio.Semaphore`` + ``.create()`` (the SDK's default httpx transport): the baseline;
- the same plain loop on the SDK's aiohttp client (same transport as the toolkit's default);
- the toolkit's ``openai`` teacher + cache + engine (``run_generation``, fresh cache each run), with
  ``http_transport=httpx`` and with the default (aiohttp when installed);
- a reference floor: a bare aiohttp session, no SDK, no retries. It is not a competitor; it shows the most that
  this fake server and this box allow, so that a gap to the ideal can be told apart from client overhead.

The ideal rate is ``concurrency / latency``. ``client CPU ms/req`` is the benchmark process's CPU time (all
threads) per request, which does not depend on how busy the box is. With a *fixed* latency the requests move in
waves of ``concurrency``: every response of a wave is handled one after the other by the client's and the
server's event loops, so each request waits on average about half a wave's worth of that CPU
(``concurrency x cpu_ms / 2``) on top of the latency. At 50 ms that alone keeps every Python client below 0.9 on a
small box; longer latencies show the rate where it does not matter. The last row re-runs the toolkit job on a full
cache (0 requests). A second table splits the toolkit's client CPU per request into phases (SDK request build,
transport, JSON parse, cache hand-off, bookkeeping, ...; see ``generation_cpu_phases.py``), from one extra
instrumented run per latency, next to every variant's uninstrumented total from the same run.

Part 2 (local HF): the ``hf`` teacher's batched sampling (``num_return_sequences``, length-sorted batches)
vs a per-example ``model.generate`` loop (one prompt, one sample per call) on the same model and prompts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def _proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of another process (Linux ``/proc``), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _ApiBench:
    """One fake server (own process) at one latency; plain loop and toolkit runs against it."""

    def __init__(self, args, latency: float):
        from toolkit.testing.openai_process import start_server_process

        self.args, self.latency = args, latency
        self.server = start_server_process(latency=latency, nice=args.server_nice)
        self.prompts = [f"Correct this sentence number {i}: she go to school ." for i in range(args.n_prompts)]

    def close(self) -> None:
        self.server.stop()

    def _measure(self, fn, n_requests: int, per: int | None = None) -> dict:
        """Run ``fn`` once; assert the server saw ``n_requests``; rates and CPU are per ``per`` (default n)."""
        per = per or n_requests
        count0 = self.server.request_count()
        srv0 = _proc_cpu_seconds(self.server.proc.pid)
        cpu0, t0 = time.process_time(), time.perf_counter()
        fn()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        srv1 = _proc_cpu_seconds(self.server.proc.pid)
        sent = self.server.request_count() - count0
        assert sent == n_requests, f"expected {n_requests} requests, the server saw {sent}"
        return {
            "seconds": seconds,
            "rate": per / seconds,
            "cpu_ms": 1000 * cpu / per,
            "server_cpu_ms": None if srv0 is None or srv1 is None else 1000 * (srv1 - srv0) / per,
        }

    def plain(self, prompts: list[str], *, transport: str = "httpx") -> dict:
        """What a user would write: ``AsyncOpenAI`` + ``asyncio.Semaphore`` + ``.create()``."""
        import openai

        args = self.args

        async def run() -> None:
            http_client = openai.DefaultAioHttpClient() if transport == "aiohttp" else None
            client = openai.AsyncOpenAI(
                base_url=self.server.base_url, api_key="bench", max_retries=0, http_client=http_client
            )
            sem = asyncio.Semaphore(args.concurrency)

            async def one(p: str):
                async with sem:
                    return await client.completions.create(model="fake", prompt=p, n=args.n, max_tokens=16, seed=0)

            await asyncio.gather(*(one(p) for p in prompts))
            await client.close()

        return self._measure(lambda: asyncio.run(run()), len(prompts))

    def raw_floor(self, prompts: list[str]) -> dict:
        """No SDK at all: a bare aiohttp session + semaphore, the least client CPU Python can spend per call.

        Not a competitor (no retries, errors, usage): it shows what the fake server and this box allow, so
        that a gap to the ideal can be told apart from client overhead.
        """
        import aiohttp

        args, url = self.args, self.server.base_url.rstrip("/") + "/completions"

        async def run() -> None:
            conn = aiohttp.TCPConnector(limit=args.concurrency)
            async with aiohttp.ClientSession(connector=conn) as session:
                sem = asyncio.Semaphore(args.concurrency)

                async def one(p: str):
                    body = {"model": "fake", "prompt": p, "n": args.n, "max_tokens": 16, "seed": 0}
                    async with sem, session.post(url, json=body) as resp:
                        resp.raise_for_status()
                        return await resp.json()

                await asyncio.gather(*(one(p) for p in prompts))

        return self._measure(lambda: asyncio.run(run()), len(prompts))

    def _items(self, prompts: list[str]) -> list:
        from toolkit.generation.items import WorkItem
        from toolkit.teachers import GenerationRequest

        return [
            WorkItem(str(i), [GenerationRequest(prompt=p, n=self.args.n, max_tokens=16, seed=0, temperature=0.7)])
            for i, p in enumerate(prompts)
        ]

    def toolkit(self, prompts: list[str], *, rerun: bool = False, transport: str = "auto") -> tuple[dict, dict | None]:
        from toolkit.generation.cache import GenerationCache
        from toolkit.generation.engine import run_generation
        from toolkit.teachers import TeacherConfig, load_teacher

        cfg = TeacherConfig(
            backend="openai",
            model="fake",
            base_url=self.server.base_url,
            api_key="bench",
            max_concurrency=self.args.concurrency,
            price_input_per_mtok=0.0,
            price_output_per_mtok=0.0,
            http_transport=transport,
        )
        teacher = load_teacher(cfg)
        items = self._items(prompts)
        with tempfile.TemporaryDirectory() as tmp, GenerationCache(Path(tmp) / "c.sqlite") as cache:
            out: dict = {}

            def job() -> None:
                _, summary = run_generation(items, teacher, cache, progress=False)
                out["summary"] = summary

            first = self._measure(job, len(prompts))
            assert out["summary"].completed == len(prompts), out["summary"]
            cached = self._measure(job, 0, per=len(prompts)) if rerun else None
        return first, cached

    def toolkit_phases(self, prompts: list[str]) -> dict[str, float]:
        """One instrumented toolkit run: client CPU ms/req per phase (``generation_cpu_phases``)."""
        from generation_cpu_phases import measure_phases  # sibling script

        from toolkit.generation.cache import GenerationCache
        from toolkit.generation.engine import run_generation
        from toolkit.teachers import TeacherConfig, load_teacher

        cfg = TeacherConfig(
            backend="openai",
            model="fake",
            base_url=self.server.base_url,
            api_key="bench",
            max_concurrency=self.args.concurrency,
            price_input_per_mtok=0.0,
            price_output_per_mtok=0.0,
        )
        teacher, items, count0 = load_teacher(cfg), self._items(prompts), self.server.request_count()
        with tempfile.TemporaryDirectory() as tmp, GenerationCache(Path(tmp) / "c.sqlite") as cache:
            out = measure_phases(lambda: run_generation(items, teacher, cache, progress=False), teacher, len(prompts))
        assert self.server.request_count() - count0 == len(prompts)
        return out


# name -> table label; "plain" is the baseline of the best/plain column.
VARIANTS = {
    "plain": "plain AsyncOpenAI + semaphore (SDK default httpx)",
    "plain_aiohttp": "plain AsyncOpenAI + semaphore, SDK aiohttp client",
    "toolkit_httpx": "toolkit teacher+cache+engine, http_transport=httpx",
    "toolkit": "toolkit teacher+cache+engine (default, aiohttp)",
    "raw_floor": "reference: bare aiohttp, no SDK (server/box ceiling)",
}


def _run_variant(bench: _ApiBench, name: str, prompts: list[str], rerun: bool = False) -> tuple[dict, dict | None]:
    if name == "plain":
        return bench.plain(prompts), None
    if name == "plain_aiohttp":
        return bench.plain(prompts, transport="aiohttp"), None
    if name == "raw_floor":
        return bench.raw_floor(prompts), None
    return bench.toolkit(prompts, rerun=rerun, transport="httpx" if name == "toolkit_httpx" else "auto")


def _api_part(args) -> tuple[list[dict], list[dict], list[dict]]:
    from generation_cpu_phases import phase_rows  # sibling script

    rows, runs_rows, phases, cpu_totals = [], [], {}, {}
    cached_row = None
    for latency in args.latencies:
        bench = _ApiBench(args, latency)
        try:
            warm = bench.prompts[: min(len(bench.prompts), 4 * args.concurrency)]
            for name in VARIANTS:  # imports, connection setup, server warm-up on both sides: not measured
                _run_variant(bench, name, warm)
            runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
            for repeat in range(args.repeats):
                order = list(VARIANTS) if repeat % 2 == 0 else list(reversed(VARIANTS))  # ABBA: load hits all alike
                for name in order:
                    last = name == "toolkit" and repeat == args.repeats - 1 and cached_row is None
                    first, cached = _run_variant(bench, name, bench.prompts, rerun=last)
                    runs[name].append(first)
                    if cached is not None:
                        cached_row = {"latency_s": latency, **cached}
            phases[latency] = bench.toolkit_phases(bench.prompts)  # one extra, instrumented run
        finally:
            bench.close()
        ideal = args.concurrency / latency
        best = {name: max(rs, key=lambda m: m["rate"]) for name, rs in runs.items()}
        cpu_totals[latency] = {VARIANTS[n]: statistics.median(m["cpu_ms"] for m in rs) for n, rs in runs.items()}
        for name, label in VARIANTS.items():
            best_run = best[name]
            server_ms = [m["server_cpu_ms"] for m in runs[name] if m["server_cpu_ms"] is not None]
            rows.append(
                {
                    "latency_s": latency,
                    "setup": label,
                    "best_req_per_s": best_run["rate"],
                    "median_req_per_s": statistics.median(m["rate"] for m in runs[name]),
                    "ideal_req_per_s": ideal,
                    "best/ideal": best_run["rate"] / ideal,
                    "best/plain_best": best_run["rate"] / best["plain"]["rate"],
                    "client_cpu_ms_per_req": statistics.median(m["cpu_ms"] for m in runs[name]),
                    "server_cpu_ms_per_req": statistics.median(server_ms) if server_ms else None,
                }
            )
            runs_rows.append(
                {
                    "latency_s": latency,
                    "setup": name,
                    "runs_req_per_s (in order)": " ".join(f"{m['rate']:.1f}" for m in runs[name]),
                }
            )
    if cached_row is not None:
        rows.append(
            {
                "latency_s": cached_row["latency_s"],
                "setup": f"toolkit re-run, fully cached (0 requests), {cached_row['seconds']:.2f} s",
                "best_req_per_s": args.n_prompts / cached_row["seconds"],
                "median_req_per_s": None,
                "ideal_req_per_s": None,
                "best/ideal": None,
                "best/plain_best": None,
                "client_cpu_ms_per_req": cached_row["cpu_ms"],
                "server_cpu_ms_per_req": None,
            }
        )
    return rows, runs_rows, phase_rows(phases, cpu_totals)


def _hf_part(args) -> tuple[list[dict], str]:
    import torch

    from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher

    model_name, note = args.hf_model, "SmolLM2-135M-Instruct (toolkit.models.loading local default)"
    try:
        from toolkit.models.loading import resolve_model

        resolve_model(model_name)
    except Exception as exc:  # noqa: BLE001 - fall back to a tiny random model and say so
        from toolkit.testing.tiny_models import build_tiny_llama

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
        for prompt in prompts:
            enc = tok(prompt, return_tensors="pt")
            for _ in range(args.n):
                gen = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=0.7,
                    top_p=1.0,
                    top_k=0,
                    max_new_tokens=args.hf_max_tokens,
                    pad_token_id=tok.pad_token_id,
                )
                loop_tokens += gen.shape[1] - enc["input_ids"].shape[1]
    loop_s = time.perf_counter() - t0
    n_samples = len(prompts) * args.n
    rows = [
        {
            "setup": "per-example generate loop",
            "samples": n_samples,
            "seconds": loop_s,
            "gen_tokens": loop_tokens,
            "samples_per_s": n_samples / loop_s,
            "tokens_per_s": loop_tokens / loop_s,
            "speedup": 1.0,
        },
        {
            "setup": "hf teacher, batched sampling",
            "samples": n_samples,
            "seconds": batched_s,
            "gen_tokens": batched_tokens,
            "samples_per_s": n_samples / batched_s,
            "tokens_per_s": batched_tokens / batched_s,
            "speedup": loop_s / batched_s,
        },
    ]
    return rows, note


def _print(rows: list[dict]) -> None:
    from toolkit.publishing.reporting import markdown_table

    fmt = [
        {k: (f"{v:.3g}" if isinstance(v, float) else ("-" if v is None else v)) for k, v in r.items()} for r in rows
    ]
    print(markdown_table(fmt))


def _machine_line() -> str:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    import openai

    return (
        f"machine: {os.cpu_count()} cores ({usable} usable), load average (1/5/15 min) {load}; "
        f"Python {platform.python_version()}, openai {openai.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_prompts", type=int, default=2000)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--latencies",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[0.05, 0.2, 0.5],
        help="comma-separated server latencies in seconds (one table block each)",
    )
    parser.add_argument("--latency", type=float, default=None, help="a single latency (overrides --latencies)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per variant; the best is reported")
    parser.add_argument("--server_nice", type=int, default=0, help="niceness added to the fake server process")
    parser.add_argument("--hf_model", default="local:smollm2-135m")
    parser.add_argument("--hf_prompts", type=int, default=8)
    parser.add_argument("--hf_max_tokens", type=int, default=16)
    parser.add_argument("--skip_api", action="store_true")
    parser.add_argument("--skip_hf", action="store_true")
    args = parser.parse_args()
    if args.latency is not None:
        args.latencies = [args.latency]
    print(_machine_line() + "\n")
    if not args.skip_api:
        print(
            f"## API: {args.n_prompts} prompts x n={args.n}, concurrency {args.concurrency}, "
            f"latencies {args.latencies} s, best of {args.repeats} interleaved runs\n"
        )
        rows, runs_rows, breakdown = _api_part(args)
        _print(rows)
        print()
        _print(runs_rows)
        print(
            "\n## Where the toolkit's client CPU goes (one extra instrumented run per latency; share of its total)\n"
        )
        _print(breakdown)
    if not args.skip_hf:
        rows, note = _hf_part(args)
        print(
            f"\n## Local HF: {args.hf_prompts} prompts x n={args.n}, {args.hf_max_tokens} new tokens; model: {note}\n"
        )
        _print(rows)


if __name__ == "__main__":
    main()
