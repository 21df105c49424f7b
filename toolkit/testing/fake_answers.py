"""What the fake OpenAI server answers: deterministic text, reasoning traces, schema-shaped JSON, log-probabilities.

Every function is a pure function of the request (prompt, choice index, seed), so a test can compute the answer
the server will give; :mod:`toolkit.testing.openai_server` serves them over HTTP.
"""

from __future__ import annotations

import hashlib
import json

WORDS = (
    "the a cat dog runs sat quickly home went school apple river blue green small large happy sad today "
    "tomorrow answer because therefore number seven three plus minus equals"
).split()


def prompt_text(body: dict) -> str:
    """One string per request: the completion prompt, or the chat messages as ``role: content`` lines."""
    if "messages" in body:
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in body["messages"])
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def default_text(prompt: str, index: int, seed, max_tokens: int = 16) -> str:
    """Deterministic pseudo-text: the same (prompt, index, seed) always gives the same words."""
    digest = hashlib.sha256(f"{prompt}\x00{index}\x00{seed}".encode()).digest()
    length = min(max_tokens, 4 + digest[0] % 8)
    return " ".join(WORDS[b % len(WORDS)] for b in digest[1 : 1 + length])


def unit_draw(*parts) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def reasoning_trace(prompt: str, index: int, seed) -> str:
    """The deterministic ``reasoning_content`` of a ``*reasoner*`` model."""
    return "Let me think step by step. " + default_text("reasoning\x00" + prompt, index, seed, 12) + "."


def schema_of(body: dict) -> dict | None:
    """The JSON schema of a ``response_format: {"type": "json_schema", ...}`` request, else None."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") != "json_schema":
        return None
    return (response_format.get("json_schema") or {}).get("schema") or {}


def fill_schema(schema: dict, prompt: str, index: int, seed) -> dict:
    """A JSON object that fits ``schema``'s top-level properties (strings, numbers, booleans, lists)."""
    value: dict = {}
    for name, spec in (schema.get("properties") or {}).items():
        kind = spec.get("type")
        if kind == "integer":
            value[name] = 7
        elif kind == "number":
            value[name] = 7.5
        elif kind == "boolean":
            value[name] = True
        elif kind == "array":
            value[name] = []
        else:
            value[name] = default_text(f"{prompt}\x00{name}", index, seed, 6)
    return value


def logprobs(body: dict, text: str, *, chat: bool) -> dict | None:
    """Per-token log-probabilities (whitespace tokens) with ``top_logprobs`` alternatives, when asked."""
    if not body.get("logprobs"):
        return None
    tokens = text.split()
    top = int(body.get("top_logprobs") or 0) if chat else int(body.get("logprobs") or 0)
    values = [-round(unit_draw(text, position, token), 4) for position, token in enumerate(tokens)]
    alternatives = [
        [(token, value)] + [(f"alt{rank}", value - rank) for rank in range(1, top)]
        for token, value in zip(tokens, values)
    ]
    if chat:
        content = [
            {
                "token": token,
                "logprob": value,
                "top_logprobs": [{"token": alt, "logprob": alt_value} for alt, alt_value in options[:top]],
            }
            for token, value, options in zip(tokens, values, alternatives)
        ]
        return {"content": content}
    top_maps = [dict(options[:top]) for options in alternatives]
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": top_maps}
