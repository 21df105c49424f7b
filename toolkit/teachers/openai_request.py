"""Request bodies and response parsing of the OpenAI chat/completions API, shared by online and batch modes.

Reasoning models (``o1``, ``o3``, ``o4-mini``, the ``gpt-5`` family except ``gpt-5-chat``) differ from the other
chat models: the length cap is ``max_completion_tokens`` (``max_tokens`` is rejected with a 400), only the
default temperature / top_p are accepted, and ``stop`` / ``logprobs`` are not supported. :func:`request_body`
maps a :class:`~toolkit.teachers.base.GenerationRequest` accordingly: the cap is sent as
``max_completion_tokens``, unsupported sampling parameters are left out (one warning per model), and stop
sequences are applied client-side by :func:`parse_response`. Note that ``max_completion_tokens`` also counts the
hidden reasoning tokens, so a small cap can leave an empty answer (``finish_reason == "length"``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from toolkit.teachers.base import Generation, GenerationRequest, Usage

logger = logging.getLogger(__name__)

# o1, o1-mini, o3-mini-2025-01-31, o4-mini, gpt-5, gpt-5-mini, gpt-5-nano-2025-08-07 ... but not gpt-5-chat-latest.
_REASONING_MODEL = re.compile(r"^(o\d+(-.*)?|gpt-5(?!-chat)(-.*)?)$")
_warned: set[tuple[str, str]] = set()


class MalformedResponseError(RuntimeError):
    """The server answered 200 but the body was unusable (bad JSON, no choices)."""


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` is an OpenAI reasoning model (``provider/`` prefixes are ignored)."""
    return bool(_REASONING_MODEL.match(model.rsplit("/", 1)[-1].lower()))


def _warn_once(model: str, what: str) -> None:
    if (model, what) not in _warned:
        _warned.add((model, what))
        logger.warning("%s is a reasoning model: %s", model, what)


def request_body(
    model: str, req: GenerationRequest, n: int, seed: int | None, *, reasoning: bool = False
) -> dict[str, Any]:
    """The JSON body of one ``/chat/completions`` (``req.messages``) or ``/completions`` (``req.prompt``) call."""
    body: dict[str, Any] = {"model": model, "n": n}
    if reasoning:
        body["max_completion_tokens"] = req.max_tokens
        if req.temperature != 1.0 or req.top_p != 1.0:
            _warn_once(model, "temperature/top_p are not supported and are left out (the model's default is used)")
        if req.stop:
            _warn_once(model, "`stop` is not supported by the API; stop sequences are applied client-side")
        if req.logprobs:
            _warn_once(model, "logprobs are not supported and are not requested")
    else:
        body.update(temperature=req.temperature, top_p=req.top_p, max_tokens=req.max_tokens)
        if req.stop:
            body["stop"] = req.stop
    if seed is not None:
        body["seed"] = seed
    chat = req.messages is not None
    if chat:
        body["messages"] = req.messages
    else:
        body["prompt"] = req.prompt
    if req.logprobs and not reasoning:
        top = req.top_logprobs or 0
        if chat:
            body["logprobs"] = True
            if top:
                body["top_logprobs"] = top
        else:
            body["logprobs"] = max(1, top)
    if req.response_format is not None:
        body["response_format"] = req.response_format
    if req.extra_body:
        body.update(req.extra_body)  # what the SDK's `extra_body=` does: fields merged into the JSON body
    return body


def endpoint(req: GenerationRequest) -> str:
    """API path (relative to ``/v1``) that serves ``req``."""
    return "/chat/completions" if req.messages is not None else "/completions"


def _cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    cut = len(text)
    for s in stop or []:
        pos = text.find(s)
        if pos != -1:
            cut = min(cut, pos)
    return text[:cut], cut < len(text)


def _chat_choice(choice: dict[str, Any]) -> tuple[str, str | None, list[float] | None, list | None]:
    """``(text, reasoning trace, token logprobs, top logprobs)`` of one chat choice."""
    message = choice.get("message")
    if message is None:
        raise MalformedResponseError("chat choice without a message")
    # vLLM's reasoning parsers and DeepSeek say `reasoning_content`; newer vLLM and others say `reasoning`.
    reasoning = message.get("reasoning_content") or message.get("reasoning") or None
    tokens = (choice.get("logprobs") or {}).get("content")
    if not tokens:
        return message.get("content") or "", reasoning, None, None
    logprobs = [float(token["logprob"]) for token in tokens]
    top = None
    if any(token.get("top_logprobs") for token in tokens):
        top = [{alt["token"]: float(alt["logprob"]) for alt in token.get("top_logprobs") or []} for token in tokens]
    return message.get("content") or "", reasoning, logprobs, top


def _completion_choice(choice: dict[str, Any]) -> tuple[str, list[float] | None, list | None]:
    """``(text, token logprobs, top logprobs)`` of one legacy completion choice."""
    text = choice.get("text")
    if text is None:
        raise MalformedResponseError("completion choice without text")
    lp = choice.get("logprobs") or {}
    token_lps = lp.get("token_logprobs")
    logprobs = [float(x) for x in token_lps] if token_lps else None
    top_maps = lp.get("top_logprobs")
    top = [{token: float(value) for token, value in (step or {}).items()} for step in top_maps] if top_maps else None
    return text, logprobs, top


def parse_response(resp: Any, *, chat: bool, stop: list[str] | None = None) -> list[Generation]:
    """``n`` generations from a decoded response body (a dict).

    Args:
        resp: The decoded JSON body.
        chat: Whether it answers ``/chat/completions``.
        stop: Stop sequences to apply client-side (reasoning models, whose API rejects ``stop``).
    """
    choices = resp.get("choices") if isinstance(resp, dict) else None
    if not choices or not isinstance(choices, list):
        raise MalformedResponseError("response has no choices")
    try:
        if len(choices) > 1:
            choices = sorted(choices, key=lambda c: c.get("index") or 0)
        usage = resp.get("usage") or {}
        p_tok = int(usage.get("prompt_tokens") or 0)
        c_tok = int(usage.get("completion_tokens") or 0)
        # Split usage so that summing per-sample usage gives the call's true total (OpenAI reports per call).
        share, rest = divmod(c_tok, len(choices))
        gens = []
        for j, choice in enumerate(choices):
            if chat:
                text, reasoning, logprobs, top = _chat_choice(choice)
            else:
                text, logprobs, top = _completion_choice(choice)
                reasoning = None
            finish = choice.get("finish_reason")
            if stop:
                text, was_cut = _cut_at_stop(text, stop)
                finish = "stop" if was_cut else finish
            gens.append(
                Generation(
                    text=text,
                    finish_reason=finish,
                    usage=Usage(p_tok if j == 0 else 0, share + (rest if j == 0 else 0)),
                    logprobs=logprobs,
                    reasoning_content=reasoning,
                    top_logprobs=top,
                )
            )
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise MalformedResponseError(f"unexpected response shape: {type(exc).__name__}: {exc}") from exc
    return gens


__all__ = ["MalformedResponseError", "endpoint", "is_reasoning_model", "parse_response", "request_body"]
