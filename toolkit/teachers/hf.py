"""Local transformers teacher: batched sampling on a causal LM (default ``local:smollm2-135m``).

Requests are grouped by sampling parameters (one ``generate`` call needs one setting), sorted by prompt length
within a group (less padding), and run ``batch_size`` prompts at a time with ``num_return_sequences = n``, left
padding, and the tokenizer's chat template for chat requests. ``temperature == 0`` means greedy decoding (one
sequence, repeated n times). Sampling is seeded per batch, so the same requests give the same texts.

Shared prefixes (``prefix_reuse``, on by default): the KV cache of the prompts' longest common token prefix (a
few-shot job's instruction + demonstrations) is computed once and reused by every prompt and sample, and each
prompt's own part is prefilled once for its ``n`` samples (see :mod:`toolkit.teachers.prefix_cache`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from toolkit.models.loading import load_causal_lm, load_tokenizer
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
from toolkit.teachers.hf_pool import available_memory_bytes, generate_batches_in_pool, plan_workers
from toolkit.teachers.prefix_cache import PrefixKVStore, common_prefix_len, prepare_batch

logger = logging.getLogger(__name__)


class HFTeacher(Teacher):
    """Teacher over a local ``AutoModelForCausalLM`` (loaded lazily on first use)."""

    def __init__(self, config: TeacherConfig):
        self.config = config
        self.id = teacher_id("hf", config.model)
        self.price_per_mtok = (0.0, 0.0)  # local compute: no per-token price
        self.batch_size = config.batch_size
        self._model = None
        self._tokenizer = None
        self._device = None
        # Reuse the common prompt prefix's KV cache (same greedy outputs, less prefill); False = plain batches.
        self.prefix_reuse = bool(getattr(config, "prefix_reuse", True))
        self._prefix_store = None
        self.job_prefix: list[int] = []  # the common token prefix of the running job's prompts

    def __repr__(self) -> str:
        return f"HFTeacher(id={self.id!r}, batch_size={self.batch_size})"

    # -- loading -------------------------------------------------------------------------------------------
    def load(self) -> HFTeacher:
        if self._model is not None:
            return self
        self._device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._tokenizer = load_tokenizer(self.config.model, padding_side="left")
        self._model = load_causal_lm(self.config.model, dtype=self.config.dtype).to(self._device)
        self._model.eval()
        self._prefix_store = PrefixKVStore(self._model, self._device)
        return self

    @property
    def model(self):
        return self.load()._model

    @property
    def tokenizer(self):
        return self.load()._tokenizer

    def prompt_text(self, req: GenerationRequest) -> str:
        """The exact text fed to the model (chat template applied for chat requests)."""
        if req.prompt is not None:
            return req.prompt
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False)
        # No template: a plain transcript the model can continue.
        return "\n".join(f"{m['role']}: {m['content']}" for m in req.messages) + "\nassistant:"

    def estimate_prompt_tokens(self, request: GenerationRequest) -> int:
        if self._tokenizer is None:
            return super().estimate_prompt_tokens(request)
        return len(self._tokenizer(self.prompt_text(request), add_special_tokens=False)["input_ids"])

    # -- generation ----------------------------------------------------------------------------------------
    def generate_each(
        self,
        requests: Sequence[GenerationRequest],
        on_result: ResultCallback,
        admit: Callable[[int], bool] | None = None,
    ) -> None:
        reject_server_options("hf", requests)
        self.load()
        texts = [self.prompt_text(r) for r in requests]
        # Chat-templated text already carries its special tokens; a raw prompt gets the tokenizer's BOS etc.
        encoded = [
            self._tokenizer(t, add_special_tokens=r.messages is None)["input_ids"] for t, r in zip(texts, requests)
        ]
        self.job_prefix = encoded[0][: common_prefix_len(encoded)] if encoded else []
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            key = (r.is_greedy, r.temperature, r.top_p, r.max_tokens, tuple(r.stop or ()), 1 if r.is_greedy else r.n)
            groups[key].append(i)
        batches = []
        for idxs in groups.values():
            idxs.sort(key=lambda i: len(encoded[i]))  # similar lengths share a batch: less padding
            batches += [idxs[start : start + self.batch_size] for start in range(0, len(idxs), self.batch_size)]
        workers, threads = self._plan_workers(len(batches))
        if workers > 1:
            generate_batches_in_pool(self, batches, requests, encoded, on_result, admit, workers, threads)
            return
        for batch in batches:
            admitted = []
            for i in batch:
                if admit is not None and not admit(i):
                    break
                admitted.append(i)
            if admitted:
                try:
                    results = self.generate_batch([requests[i] for i in admitted], [encoded[i] for i in admitted])
                except Exception as exc:  # noqa: BLE001 - reported per request, the job keeps going
                    logger.exception("hf batch of %d failed", len(admitted))
                    err = TeacherError(f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
                    results = [err] * len(admitted)
                for i, res in zip(admitted, results):
                    on_result(i, res)
            if len(admitted) < len(batch):
                return  # the budget said stop

    def _plan_workers(self, n_batches: int) -> tuple[int, int]:
        """Decoding processes for this job (see :mod:`toolkit.teachers.hf_pool`); ``(1, _)`` = in-process."""
        if self._device != "cpu" or self.config.workers == 1 or n_batches < 2:
            return 1, torch.get_num_threads()
        threads = torch.get_num_threads()
        if self.config.workers > 1:
            return min(self.config.workers, n_batches), max(1, threads // self.config.workers)
        return plan_workers(threads, n_batches, self._model.get_memory_footprint(), available_memory_bytes())

    def generate_batch(self, reqs: list[GenerationRequest], ids: list[list[int]]) -> list[list[Generation]]:
        """One ``generate`` call for requests sharing their sampling settings (``ids``: their prompt tokens)."""
        tok = self._tokenizer
        model = self._model
        first = reqs[0]
        pad_id = tok.pad_token_id
        num_seq = 1 if first.is_greedy else first.n
        prefix_len = self._batch_prefix_len(ids) if self.prefix_reuse else 0
        with torch.inference_mode():
            if prefix_len or (self.prefix_reuse and num_seq > 1):
                input_ids, attention, cache = prepare_batch(self._prefix_store, ids, prefix_len, num_seq, pad_id)
            else:
                width = max(len(x) for x in ids)
                input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(ids), width), dtype=torch.long)
                for row, x in enumerate(ids):  # left padding: generation continues right after each prompt
                    input_ids[row, width - len(x) :] = torch.tensor(x, dtype=torch.long)
                    attention[row, width - len(x) :] = 1
                cache = None
        width = input_ids.shape[1]
        kwargs: dict[str, Any] = {
            "max_new_tokens": first.max_tokens,
            "pad_token_id": pad_id,
            "num_return_sequences": num_seq,
        }
        if first.is_greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=first.temperature, top_p=first.top_p, top_k=0)
        if first.stop:
            kwargs.update(stop_strings=list(first.stop), tokenizer=tok)
        seed = first.sample_seed(0)
        torch.manual_seed(0 if seed is None else seed)
        with torch.inference_mode():
            if cache is not None:
                kwargs["past_key_values"] = cache
            out = model.generate(
                input_ids=input_ids.to(self._device), attention_mask=attention.to(self._device), **kwargs
            )
        new_tokens = out[:, width:].tolist()
        eos_ids = set(_as_list(model.generation_config.eos_token_id) + _as_list(tok.eos_token_id))
        results = []
        for row, req in enumerate(reqs):
            gens = []
            for s in range(num_seq):
                toks = new_tokens[row * num_seq + s]
                gens.append(self._decode(toks, eos_ids, pad_id, req, prompt_tokens=len(ids[row]) if s == 0 else 0))
            if req.is_greedy and req.n > 1:  # greedy samples are identical: decode once, repeat
                gens += [Generation(gens[0].text, gens[0].finish_reason, Usage(0, 0)) for _ in range(req.n - 1)]
            results.append(gens)
        return results

    def _batch_prefix_len(self, ids: list[list[int]]) -> int:
        """Shared prefix to reuse: the job's common prefix (one cache for all batches) unless this batch shares one
        more than twice as long (a job mixing templates); always leaves every prompt at least one token of its own."""
        batch = common_prefix_len(ids)
        job = len(self.job_prefix) if ids[0][: len(self.job_prefix)] == self.job_prefix else 0
        chosen = job if 2 * job >= batch else batch
        return max(0, min(chosen, min(len(x) for x in ids) - 1))

    def _decode(self, toks: list[int], eos_ids: set, pad_id: int, req: GenerationRequest, prompt_tokens: int):
        finish = "length"
        kept = []
        for t in toks:
            if t in eos_ids:
                finish = "stop"
                break
            if t == pad_id:  # padding after a shorter sequence finished (pad != eos tokenizers)
                finish = "stop"
                break
            kept.append(t)
        text = self._tokenizer.decode(kept, skip_special_tokens=True)
        for stop in req.stop or []:
            if stop in text:
                text = text.split(stop, 1)[0]
                finish = "stop"
        completion = len(kept) + (1 if finish == "stop" and len(kept) < len(toks) else 0)
        return Generation(text=text, finish_reason=finish, usage=Usage(prompt_tokens, completion))


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [int(value)]
