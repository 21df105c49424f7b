"""Parameter rules of the real OpenAI API that the fake server enforces (the 400s a client must avoid)."""

from __future__ import annotations

import re

# o1, o3-mini, o4-mini, gpt-5, gpt-5-nano-2025-08-07 ... (gpt-5-chat-* is a plain chat model).
_REASONING = re.compile(r"^(o\d+(-.*)?|gpt-5(?!-chat)(-.*)?)$")


def reasoning_error(body: dict) -> str | None:
    """The 400 message the real API gives a reasoning model for parameters it does not support."""
    if not _REASONING.match(str(body.get("model", ""))):
        return None
    if "max_tokens" in body:
        return "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens'."
    for name in ("temperature", "top_p"):
        if body.get(name) not in (None, 1, 1.0):
            return f"Unsupported value: '{name}' does not support {body[name]} with this model."
    return "Unsupported parameter: 'stop' is not supported with this model." if "stop" in body else None
