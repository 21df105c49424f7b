"""Offline vLLM teacher (``pip install 'distill-toolkit[vllm]'``; CUDA only).

One ``vllm.LLM`` engine, created on first use with ``dtype`` and the config's ``engine_kwargs`` (tensor / data
parallel size, ``gpu_memory_utilization``, ``max_model_len``, ``enable_prefix_caching``, ...). Requests go to
``generate`` (prompts) or ``chat`` (messages) in chunks of ``chunk_size`` with one ``SamplingParams`` each; vLLM
schedules and batches a chunk itself. Every answer of a chunk is handed to the engine's callback (which puts it
in the generation cache, journaled at once) before the next chunk is sent: a job killed midway resumes after
the last finished chunk, and the progress bar moves once per chunk. :meth:`VLLMTeacher.close` frees the engine's
GPU memory, so a process can generate with vLLM and then train.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Sequence

import torch

from toolkit.models.loading import resolve_model
from toolkit.teachers.base import (
    Generation,
    GenerationRequest,
    ResultCallback,
    Teacher,
    TeacherError,
    Usage,
    reject_server_options,
    teacher_id,
)
from toolkit.teachers.config import TeacherConfig

logger = logging.getLogger(__name__)

INSTALL_HINT = "the vllm backend needs vLLM (CUDA wheels): pip install 'distill-toolkit[vllm]'  (or: pip install vllm)"


def import_vllm():
    """The ``vllm`` module (an optional dependency), or an ImportError naming the pip command."""
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return vllm


def release_vllm_state() -> None:
    """Tear down vLLM's model-parallel groups where this vLLM version has the helpers (best effort)."""
    try:
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel
    except ImportError:
        return
    with contextlib.suppress(Exception):  # nothing to tear down when the engine never initialised them
        destroy_model_parallel()
    with contextlib.suppress(Exception):
        destroy_distributed_environment()


def chunks(indices: list[int], size: int) -> list[list[int]]:
    """``indices`` cut into consecutive runs of at most ``size``."""
    return [indices[start : start + size] for start in range(0, len(indices), size)]


class VLLMTeacher(Teacher):
    """Teacher over an offline ``vllm.LLM`` engine (created lazily on first use)."""

    def __init__(self, config: TeacherConfig):
        import_vllm()  # fail at construction with the pip command, not halfway through a job
        self.config = config
        self.id = teacher_id("vllm", config.model)
        self.price_per_mtok = (0.0, 0.0)
        self.chunk_size = config.chunk_size
        self.llm = None

    def engine(self):
        """The ``vllm.LLM`` (built on first call)."""
        if self.llm is None:
            vllm = import_vllm()
            kwargs = {"dtype": self.config.dtype or "auto", **self.config.vllm_engine_kwargs()}
            logger.info("vllm engine for %s with %s", self.config.model, kwargs)
            self.llm = vllm.LLM(model=resolve_model(self.config.model), **kwargs)
        return self.llm

    def sampling_params(self, request: GenerationRequest):
        vllm = import_vllm()
        logprobs = None
        if request.logprobs:
            logprobs = max(1, request.top_logprobs or 0)
        return vllm.SamplingParams(
            n=request.n,
            temperature=request.temperature,
            top_p=request.top_p if request.temperature > 0 else 1.0,
            max_tokens=request.max_tokens,
            stop=request.stop or None,
            seed=request.sample_seed(0),
            logprobs=logprobs,
        )

    def generate_each(
        self,
        requests: Sequence[GenerationRequest],
        on_result: ResultCallback,
        admit: Callable[[int], bool] | None = None,
    ) -> None:
        reject_server_options("vllm", requests)
        llm = self.engine()
        # vLLM serves chat and plain prompts through their own entry points: one run of chunks for each.
        for is_chat in (False, True):
            chosen = [i for i in range(len(requests)) if (requests[i].messages is not None) == is_chat]
            for chunk in chunks(chosen, self.chunk_size):
                admitted = []
                for i in chunk:
                    if admit is not None and not admit(i):
                        break
                    admitted.append(i)
                if admitted:
                    self.run_chunk(llm, requests, admitted, is_chat, on_result)
                if len(admitted) < len(chunk):
                    return  # the budget said stop

    def run_chunk(self, llm, requests, indices: list[int], is_chat: bool, on_result: ResultCallback) -> None:
        """One engine call for ``indices``; every answer (or the call's error) goes to ``on_result``."""
        params = [self.sampling_params(requests[i]) for i in indices]
        try:
            if is_chat:
                outputs = llm.chat([requests[i].messages for i in indices], params, use_tqdm=False)
            else:
                outputs = llm.generate([requests[i].prompt for i in indices], params, use_tqdm=False)
        except Exception as exc:  # noqa: BLE001 - reported per request, the next chunk still runs
            error = TeacherError(f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
            for i in indices:
                on_result(i, error)
            return
        for i, output in zip(indices, outputs):
            on_result(i, to_generations(output, want_top=requests[i].top_logprobs is not None))

    def close(self) -> None:
        """Free the engine and its GPU memory (the next call builds a new one)."""
        if self.llm is None:
            return
        self.llm = None  # the last reference: the engine's workers and KV cache go with it
        release_vllm_state()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        logger.info("vllm engine for %s closed", self.config.model)


def to_generations(output, *, want_top: bool) -> list[Generation]:
    """The :class:`Generation` s of one ``vllm.RequestOutput`` (prompt tokens counted on the first sample)."""
    prompt_tokens = len(output.prompt_token_ids or [])
    generations = []
    for index, completion in enumerate(output.outputs):
        logprobs = top = None
        if completion.logprobs:
            steps = [(token, completion.logprobs[position]) for position, token in enumerate(completion.token_ids)]
            logprobs = [step[token].logprob for token, step in steps]
            if want_top:
                top = [{entry.decoded_token: entry.logprob for entry in step.values()} for _, step in steps]
        generations.append(
            Generation(
                text=completion.text,
                finish_reason=completion.finish_reason,
                usage=Usage(prompt_tokens if index == 0 else 0, len(completion.token_ids)),
                logprobs=logprobs,
                top_logprobs=top,
            )
        )
    return generations
