"""vLLM backend: chunked engine calls that resume after a kill, engine_kwargs, close(); real vLLM on GPU machines.

A fake ``vllm`` module (put into ``sys.modules``) records every engine call, so the chunking and resume logic
run here without CUDA.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections import Counter
from dataclasses import dataclass, field

import pytest

from toolkit.generation.cache import GenerationCache
from toolkit.generation.engine import run_generation
from toolkit.generation.items import WorkItem
from toolkit.teachers import load_teacher
from toolkit.teachers.base import GenerationRequest
from toolkit.teachers.config import TeacherConfig

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@dataclass
class FakeLogprob:
    logprob: float
    decoded_token: str


@dataclass
class FakeCompletion:
    text: str
    token_ids: list[int]
    finish_reason: str = "stop"
    logprobs: list | None = None


@dataclass
class FakeRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeCompletion]


@dataclass
class EngineLog:
    """What the fake engine saw: constructor kwargs, prompts per call, teardown calls."""

    init_kwargs: list[dict] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)
    fail_on_call: int | None = None
    teardowns: int = 0
    engines_alive: int = 0


def fake_vllm_module(log: EngineLog) -> dict[str, types.ModuleType]:
    """``vllm`` and ``vllm.distributed.parallel_state`` modules backed by ``log``."""

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        def __init__(self, model, **kwargs):
            log.init_kwargs.append({"model": model, **kwargs})
            log.engines_alive += 1

        def __del__(self):
            log.engines_alive -= 1

        def generate(self, prompts, params, use_tqdm=True):
            log.calls.append(list(prompts))
            if log.fail_on_call == len(log.calls):
                raise KeyboardInterrupt  # the job is killed while this chunk runs
            return [self.answer(prompt, p.kwargs) for prompt, p in zip(prompts, params)]

        def chat(self, conversations, params, use_tqdm=True):
            return self.generate([c[-1]["content"] for c in conversations], params, use_tqdm)

        @staticmethod
        def answer(prompt, kwargs):
            top = kwargs.get("logprobs")
            completions = []
            for sample in range(kwargs["n"]):
                logprobs = None
                if top:
                    logprobs = [{7: FakeLogprob(-0.5, "seven"), 8: FakeLogprob(-1.5, "eight")}]
                completions.append(FakeCompletion(f"{prompt} -> {sample}", [7], logprobs=logprobs))
            return FakeRequestOutput(prompt_token_ids=[1, 2, 3], outputs=completions)

    def destroy():
        log.teardowns += 1

    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM
    vllm.SamplingParams = SamplingParams
    distributed = types.ModuleType("vllm.distributed")
    parallel_state = types.ModuleType("vllm.distributed.parallel_state")
    parallel_state.destroy_model_parallel = destroy
    parallel_state.destroy_distributed_environment = destroy
    distributed.parallel_state = parallel_state
    vllm.distributed = distributed
    return {"vllm": vllm, "vllm.distributed": distributed, "vllm.distributed.parallel_state": parallel_state}


@pytest.fixture
def engine_log(monkeypatch):
    log = EngineLog()
    for name, module in fake_vllm_module(log).items():
        monkeypatch.setitem(sys.modules, name, module)
    return log


def _config(**overrides):
    return TeacherConfig(backend="vllm", model="org/teacher", **{"chunk_size": 10, **overrides})


def _items(count):
    return [WorkItem(f"i{k}", [GenerationRequest(prompt=f"p{k}", n=2, seed=0)]) for k in range(count)]


def test_a_job_killed_mid_run_resumes_with_no_repeated_prompt(engine_log, tmp_path):
    engine_log.fail_on_call = 3  # two chunks of 10 finish, the third is running at the kill
    progress = []
    with GenerationCache(tmp_path / "c.sqlite") as cache, pytest.raises(KeyboardInterrupt):
        run_generation(_items(45), load_teacher(_config()), cache, progress=False, on_progress=progress.append)
    assert [len(call) for call in engine_log.calls] == [10, 10, 10]
    assert progress[-1].samples_done == 40, "the progress moved with each finished chunk"
    engine_log.fail_on_call = None
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        outcomes, summary = run_generation(_items(45), load_teacher(_config()), cache, progress=False)
    assert summary.completed == 45 and summary.cached_samples == 40
    finished = [prompt for call in engine_log.calls[:2] for prompt in call]
    resumed = [prompt for call in engine_log.calls[3:] for prompt in call]
    assert [len(call) for call in engine_log.calls[3:]] == [10, 10, 5]
    assert not set(finished) & set(resumed), "a prompt answered before the kill was sent again"
    assert Counter(finished + resumed) == Counter(f"p{k}" for k in range(45))
    assert outcomes[0].generations[0][1].text == "p0 -> 1"


def test_engine_kwargs_reach_the_engine(engine_log):
    kwargs = {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.8, "enable_prefix_caching": True}
    teacher = load_teacher(_config(engine_kwargs=kwargs, dtype="bfloat16"))
    teacher.generate([GenerationRequest(prompt="x")])
    assert engine_log.init_kwargs == [{"model": "org/teacher", "dtype": "bfloat16", **kwargs}]


def test_engine_kwargs_from_the_command_line_are_json():
    config = _config(engine_kwargs='{"data_parallel_size": 4, "max_model_len": 2048}')
    assert config.vllm_engine_kwargs() == {"data_parallel_size": 4, "max_model_len": 2048}
    with pytest.raises(ValueError, match="JSON"):
        _config(engine_kwargs="tensor_parallel_size=2")


def test_close_frees_the_engine(engine_log):
    teacher = load_teacher(_config())
    teacher.generate([GenerationRequest(prompt="x")])
    assert engine_log.engines_alive == 1
    teacher.close()
    assert engine_log.engines_alive == 0 and engine_log.teardowns == 2
    teacher.generate([GenerationRequest(prompt="y")])  # a closed teacher builds a new engine when used again
    assert len(engine_log.init_kwargs) == 2


def test_top_logprobs_come_from_the_engine(engine_log):
    generation = load_teacher(_config()).generate([GenerationRequest(prompt="x", top_logprobs=2)])[0][0]
    assert generation.logprobs == [-0.5]
    assert generation.top_logprobs == [{"seven": -0.5, "eight": -1.5}]


def test_server_only_options_are_refused(engine_log):
    with pytest.raises(ValueError, match="extra_body"):
        load_teacher(_config()).generate([GenerationRequest(prompt="x", extra_body={"top_k": 3})])


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_missing_vllm_names_the_pip_command():
    with pytest.raises(ImportError, match=r"pip install"):
        load_teacher(TeacherConfig(backend="vllm", model="local:smollm2-135m"))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="needs the vllm extra")
def test_vllm_generates_n_samples():
    teacher = load_teacher(TeacherConfig(backend="vllm", model="local:smollm2-135m"))
    out = teacher.generate([GenerationRequest(prompt="The capital of France is", n=2, max_tokens=8, seed=0)])
    assert len(out[0]) == 2 and all(g.text for g in out[0])
    teacher.close()
