"""Offline vLLM teacher (``pip install 'distill-toolkit[vllm]'``; CUDA only).

One ``vllm.LLM`` engine; all requests go to ``generate`` / ``chat`` in one call (vLLM schedules and batches
them itself), with one ``SamplingParams`` per request (``n``, temperature, top_p, max_tokens, stop, seed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from toolkit.teachers.base import (
    Generation,
    GenerationRequest,
    ResultCallback,
    Teacher,
    TeacherConfig,
    TeacherError,
    Usage,
    teacher_id,
)

logger = logging.getLogger(__name__)

INSTALL_HINT = "the vllm backend needs vLLM (CUDA wheels): pip install 'distill-toolkit[vllm]'  (or: pip install vllm)"


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return vllm


class VLLMTeacher(Teacher):
    """Teacher over an offline ``vllm.LLM`` engine (created lazily on first use)."""

    def __init__(self, config: TeacherConfig):
        _import_vllm()  # fail at construction with the pip command, not halfway through a job
        self.config = config
        self.id = teacher_id("vllm", config.model)
        self.price_per_mtok = (0.0, 0.0)
        self._llm = None

    def _engine(self):
        if self._llm is None:
            from toolkit.models.loading import resolve_model

            vllm = _import_vllm()
            self._llm = vllm.LLM(model=resolve_model(self.config.model), dtype=self.config.dtype or "auto")
        return self._llm

    def _params(self, req: GenerationRequest):
        vllm = _import_vllm()
        return vllm.SamplingParams(
            n=req.n,
            temperature=req.temperature,
            top_p=req.top_p if req.temperature > 0 else 1.0,
            max_tokens=req.max_tokens,
            stop=req.stop or None,
            seed=req.sample_seed(0),
            logprobs=1 if req.logprobs else None,
        )

    def generate_each(
        self,
        requests: Sequence[GenerationRequest],
        on_result: ResultCallback,
        admit: Callable[[int], bool] | None = None,
    ) -> None:
        llm = self._engine()
        chosen = []
        for i in range(len(requests)):
            if admit is not None and not admit(i):
                break
            chosen.append(i)
        # vLLM batches internally; chat and plain prompts go through their own entry points.
        for is_chat in (False, True):
            idx = [i for i in chosen if (requests[i].messages is not None) == is_chat]
            if not idx:
                continue
            params = [self._params(requests[i]) for i in idx]
            try:
                if is_chat:
                    outs = llm.chat([requests[i].messages for i in idx], params, use_tqdm=False)
                else:
                    outs = llm.generate([requests[i].prompt for i in idx], params, use_tqdm=False)
            except Exception as exc:  # noqa: BLE001 - reported per request
                err = TeacherError(f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
                for i in idx:
                    on_result(i, err)
                continue
            for i, out in zip(idx, outs):
                p_tok = len(out.prompt_token_ids or [])
                gens = []
                for j, comp in enumerate(out.outputs):
                    logprobs = None
                    if comp.logprobs:
                        logprobs = [next(iter(step.values())).logprob for step in comp.logprobs]
                    gens.append(
                        Generation(
                            text=comp.text,
                            finish_reason=comp.finish_reason,
                            usage=Usage(p_tok if j == 0 else 0, len(comp.token_ids)),
                            logprobs=logprobs,
                        )
                    )
                on_result(i, gens)
