"""Config plumbing shared by recipes and data-generation jobs.

Every recipe / job is a script that exposes ``make_parser()`` returning a :class:`trl.TrlParser`
over its config dataclasses, so that flat YAML files (``--config path.yaml``) and CLI overrides
work the same everywhere, and a test can parse every YAML shipped in the repo.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from trl import TrlParser

logger = logging.getLogger(__name__)

# Field names whose values are secrets: never written to saved configs, model cards or logs.
# "token" alone would also hit max_tokens / pad_token / num_tokens (counts and tokenizer settings that
# lineage needs), so only a whole-word trailing "token" counts, minus the tokenizer's special tokens.
SECRET_FIELD_PATTERN = re.compile(
    r"(api[_-]?key|secret|password|passwd|authorization|credential|(^|[_-])token$)", re.IGNORECASE
)
_NOT_SECRET = re.compile(r"^(pad|eos|bos|unk|sep|cls|mask|additional_special|special)[_-]token$", re.IGNORECASE)
REDACTED = "<redacted>"


def is_secret_key(key: str) -> bool:
    """True when a config/metadata key names a secret (``api_key``, ``hub_token``), not a count or tokenizer setting."""
    key = str(key)
    return bool(SECRET_FIELD_PATTERN.search(key)) and not _NOT_SECRET.match(key)


def make_parser(dataclass_types: Iterable[type]):
    """Build a ``TrlParser`` (HfArgumentParser + ``--config`` YAML support) over ``dataclass_types``."""
    return TrlParser(list(dataclass_types))


def parse_args(dataclass_types: Iterable[type], args: list[str] | None = None) -> tuple[Any, ...]:
    """Parse ``--config file.yaml`` plus CLI overrides into instances of ``dataclass_types``."""
    return make_parser(dataclass_types).parse_args_and_config(args)


def cuda_available() -> bool:
    """True when a CUDA device is usable."""
    return torch.cuda.is_available()


def apply_cpu_safe_defaults(training_args: Any) -> Any:
    """Make transformers/TRL ``TrainingArguments`` safe on a CPU-only machine.

    bf16 is 20-30x slower than fp32 on CPUs without native bf16 (measured on our 2-core AVX2 boxes),
    and TRL's configs default to ``bf16=True``; fp16 does not run on CPU at all. On CUDA nothing is
    changed.
    """
    if cuda_available():
        return training_args
    changed = []
    for name in ("bf16", "fp16"):
        if getattr(training_args, name, False):
            setattr(training_args, name, False)
            changed.append(name)
    if hasattr(training_args, "use_cpu") and not training_args.use_cpu:
        training_args.use_cpu = True
    if changed:
        logger.info("No CUDA device: disabled %s (fp32 on CPU).", ", ".join(changed))
    return training_args


def redact(obj: Any) -> Any:
    """Return a JSON-friendly copy of ``obj`` with secret-looking fields replaced by ``<redacted>``.

    Works on dataclasses, dicts, lists and scalars. Used before any config is saved or rendered.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif hasattr(obj, "to_dict") and callable(obj.to_dict):
        obj = obj.to_dict()
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if is_secret_key(key) and value not in (None, "", False):
                out[str(key)] = REDACTED
            else:
                out[str(key)] = redact(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, enum.Enum):
        # str-valued enums (IntervalStrategy ...) would otherwise break YAML safe-dump in model cards.
        return redact(obj.value)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def save_config(path: str | os.PathLike, **sections: Any) -> Path:
    """Write the run's configs (one key per dataclass) as JSON with secrets redacted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {name: redact(value) for name, value in sections.items()}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def setup_logging(level: int = logging.INFO) -> None:
    """Consistent log format for scripts (library code only ever uses ``logging.getLogger``)."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level, force=False
    )
