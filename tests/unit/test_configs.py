"""Config plumbing: every shipped YAML parses with its script's parser; secrets are redacted."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from toolkit.configs import REDACTED, apply_cpu_safe_defaults, is_secret_key, make_parser, redact, save_config

REPO = Path(__file__).resolve().parents[2]


@dataclass
class _Args:
    model: str = field(default="m", metadata={"help": "model"})
    api_key: str | None = field(default=None, metadata={"help": "secret"})
    steps: int = field(default=3, metadata={"help": "steps"})


def test_parser_yaml_and_cli_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: from-yaml\nsteps: 7\n")
    (args,) = make_parser([_Args]).parse_args_and_config(["--config", str(cfg), "--steps", "9"])
    assert args.model == "from-yaml" and args.steps == 9


def test_parser_rejects_unknown_yaml_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("modle: typo\n")
    with pytest.raises((ValueError, SystemExit)):
        make_parser([_Args]).parse_args_and_config(["--config", str(cfg)])


def test_redact_and_save_config(tmp_path):
    secret = "sk-test-THIS-MUST-NOT-LEAK"
    out = save_config(tmp_path / "config.json", args=_Args(api_key=secret), extra={"hub_token": secret, "n": 1})
    text = out.read_text()
    assert secret not in text
    data = json.loads(text)
    assert data["args"]["api_key"] == REDACTED and data["extra"]["hub_token"] == REDACTED
    assert data["args"]["model"] == "m" and data["extra"]["n"] == 1
    # Empty secrets stay visible as empty (nothing to hide, and it tells the reader none was set).
    assert redact({"api_key": None})["api_key"] is None


@pytest.mark.parametrize(
    "key", ["api_key", "openai_api_key", "hub_token", "hf_token", "token", "HF-TOKEN", "password"]
)
def test_secret_keys_detected(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["max_tokens", "num_tokens", "prompt_tokens", "pad_token", "eos_token", "tokenizer_name"]
)
def test_counts_and_tokenizer_settings_are_not_secrets(key):
    assert not is_secret_key(key)
    assert redact({key: 5})[key] == 5


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour: with a GPU the defaults are kept")
def test_cpu_safe_defaults_turn_off_bf16():
    args = TrainingArguments(output_dir="unused", bf16=False, report_to=[])
    args.bf16 = True  # what TRL configs default to
    apply_cpu_safe_defaults(args)
    assert args.bf16 is False and args.use_cpu is True


def test_import_toolkit_is_light():
    code = "import sys, toolkit; heavy = [m for m in ('torch', 'transformers', 'datasets', 'trl') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout


def test_redact_turns_enums_into_values():
    out = redact({"eval_strategy": IntervalStrategy.STEPS})
    assert out == {"eval_strategy": "steps"} and type(out["eval_strategy"]) is str
