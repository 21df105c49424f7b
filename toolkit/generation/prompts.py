"""Few-shot prompt templates and demonstration selection.

A :class:`FewShotTemplate` renders demonstrations + a query either as one text prompt (completion models) or
as chat messages (user/assistant turns per demonstration). Fields are Python ``str.format`` placeholders over
a row's columns, so ``{source}`` or ``{references[0]}`` both work. :func:`template_hash` fingerprints the
template *and* the chosen demonstrations: it is the lineage column ``template_hash`` of generated rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

PROMPT_FORMATS = ("text", "chat")
DEMO_SELECTIONS = ("fixed", "random")


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _prefix(template: str) -> str:
    """Literal text before the first placeholder (``"Corrected: {target}"`` → ``"Corrected:"``)."""
    for literal, name, _, _ in string.Formatter().parse(template):
        return literal.strip() if name is not None else ""
    return ""


def render(template: str, row: Mapping[str, Any], *, what: str = "template") -> str:
    """``template.format(**row)`` with an error that names the missing column and the available ones."""
    try:
        return template.format(**row)
    except (KeyError, IndexError, AttributeError) as exc:
        raise ValueError(
            f"{what} {template!r} needs {_fields(template)} but the row has columns {sorted(row)} ({exc!r})"
        ) from exc


@dataclass
class FewShotTemplate:
    """A few-shot prompt.

    Args:
        instruction: Task description placed first (system message in chat format). May be empty.
        input_template: Renders a row's input, e.g. ``"Sentence: {source}"``.
        output_template: Renders a demonstration's answer, e.g. ``"Corrected: {target}"``. In text format the
            query ends with this template's literal prefix (``"Corrected:"``) so the model continues from there.
        separator: Between examples in text format.
        joiner: Between an example's input and output in text format.
        prompt_format: ``"text"`` (one prompt) or ``"chat"`` (messages).
    """

    instruction: str = ""
    input_template: str = "{input}"
    output_template: str = "{output}"
    separator: str = "\n\n"
    joiner: str = "\n"
    prompt_format: str = "text"

    def __post_init__(self) -> None:
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}")
        if not _fields(self.input_template):
            raise ValueError(f"input_template {self.input_template!r} has no {{field}} placeholder")

    @property
    def output_prefix(self) -> str:
        return _prefix(self.output_template)

    @property
    def input_prefix(self) -> str:
        return _prefix(self.input_template)

    def default_stop(self) -> list[str]:
        """Where a text-format completion ends: at the next example (separator + input prefix)."""
        stops = [self.separator + self.input_prefix] if self.input_prefix else [self.separator]
        return [s for s in stops if s]

    def render_demo(self, demo: Mapping[str, Any]) -> tuple[str, str]:
        return (
            render(self.input_template, demo, what="input_template (demo)"),
            render(self.output_template, demo, what="output_template (demo)"),
        )

    def render_text(self, demos: Sequence[Mapping[str, Any]], row: Mapping[str, Any]) -> str:
        parts = [self.instruction.strip()] if self.instruction.strip() else []
        parts += [inp + self.joiner + out for inp, out in (self.render_demo(d) for d in demos)]
        query = render(self.input_template, row, what="input_template")
        prefix = self.output_prefix
        parts.append(query + self.joiner + prefix if prefix else query + self.joiner.rstrip(" "))
        return self.separator.join(parts).rstrip(" ")

    def render_chat(self, demos: Sequence[Mapping[str, Any]], row: Mapping[str, Any]) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.instruction.strip()}] if self.instruction.strip() else []
        for inp, out in (self.render_demo(d) for d in demos):
            messages += [{"role": "user", "content": inp}, {"role": "assistant", "content": out}]
        messages.append({"role": "user", "content": render(self.input_template, row, what="input_template")})
        return messages

    def build(self, demos: Sequence[Mapping[str, Any]], row: Mapping[str, Any]) -> dict[str, Any]:
        """``{"prompt": str}`` or ``{"messages": [...]}``: keyword arguments for a GenerationRequest."""
        if self.prompt_format == "chat":
            return {"messages": self.render_chat(demos, row)}
        return {"prompt": self.render_text(demos, row)}

    def clean_output(self, text: str, *, first_line: bool = False) -> str:
        """Strip whitespace (the LMCor seed code kept trailing newlines: a known bug) and a repeated prefix."""
        text = text.strip()
        prefix = self.output_prefix
        if prefix and text.startswith(prefix):  # chat models often repeat "Corrected:" from the demos
            text = text[len(prefix) :].strip()
        if first_line:
            text = text.split("\n", 1)[0].strip()
        return text


def select_demos(
    rows: Sequence[Mapping[str, Any]],
    k: int,
    *,
    method: str = "fixed",
    seed: int = 0,
    indices: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Pick ``k`` demonstrations from ``rows``: the first k (``fixed``), explicit ``indices``, or a seeded sample.

    The same demonstrations serve every query of a job, so the prompt prefix (and the template hash) is shared.
    """
    if method not in DEMO_SELECTIONS:
        raise ValueError(f"demo selection must be one of {DEMO_SELECTIONS}, got {method!r}")
    if k < 0:
        raise ValueError(f"number of demonstrations must be >= 0, got {k}")
    if k > len(rows):
        raise ValueError(f"asked for {k} demonstrations but the demo pool has only {len(rows)} rows")
    if indices:
        bad = [i for i in indices if not 0 <= i < len(rows)]
        if bad:
            raise ValueError(f"demo indices {bad} out of range for a pool of {len(rows)} rows")
        chosen = list(indices)
    elif method == "fixed":
        chosen = list(range(k))
    else:
        chosen = sorted(random.Random(seed).sample(range(len(rows)), k))
    return [dict(rows[i]) for i in chosen]


def template_hash(template: FewShotTemplate, demos: Sequence[Mapping[str, Any]] = ()) -> str:
    """16-hex fingerprint of the template and its rendered demonstrations."""
    payload = {"template": asdict(template), "demos": [list(template.render_demo(d)) for d in demos]}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
