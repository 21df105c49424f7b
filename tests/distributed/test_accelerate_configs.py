"""Every shipped accelerate config parses, saves a loadable model, and is exercised: here on CPU or by the GPU smoke.

The GPU smoke (``scripts/gpu_smoke.sh``) runs every recipe under every GPU config and reloads what it saved; the
tests marked ``gpu`` run it (skipped without CUDA). On CPU we check what can be checked: the configs, that the smoke
names each GPU config with the reason it is GPU-only, and that the flags it passes still parse in each recipe.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "recipes" / "accelerate_configs").glob("*.yaml"))
SMOKE = REPO / "scripts" / "gpu_smoke.sh"
RECIPES = ("lmcor", "step_by_step", "qlora_multitask", "llmembed")
#: Configs a CPU test below launches for real.
CPU_LAUNCHED = {"cpu.yaml"}

PROBE = textwrap.dedent(
    """
    import json, sys
    from accelerate import Accelerator

    accelerator = Accelerator()
    record = {"type": accelerator.distributed_type.value, "processes": accelerator.num_processes}
    with open(sys.argv[1], "w") as f:
        json.dump(record, f)
    """
)


def _smoke_reasons() -> dict[str, str]:
    """``{config file: why it is GPU-only}`` from the smoke script's header."""
    pattern = re.compile(r"^#\s+(\S+\.yaml):\s+(\S.*)$")
    return {m.group(1): m.group(2) for m in map(pattern.match, SMOKE.read_text().splitlines()) if m}


def _smoke_configs() -> set[str]:
    """The config names the smoke script runs by default."""
    match = re.search(r'^CONFIGS="\$\{CONFIGS:-([^}]*)\}"', SMOKE.read_text(), re.MULTILINE)
    assert match, "scripts/gpu_smoke.sh sets no default CONFIGS"
    return {f"{name}.yaml" for name in match.group(1).split()}


def _smoke_recipe_args(recipe: str, config: str) -> list[str]:
    """The flags the smoke script passes to ``recipe`` under ``config`` (its ``recipe_args`` function, run by bash)."""
    script = f'source <(sed -n "/^recipe_args()/,/^}}/p" {shlex.quote(str(SMOKE))}); STEPS=3; NPROC=2; '
    script += f"recipe_args {recipe} {config}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True)
    return shlex.split(proc.stdout)


def test_there_are_configs():
    assert CONFIGS, "no accelerate config shipped"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_with_accelerate(path):
    config = load_config_from_file(str(path))  # refuses unknown keys
    assert config.num_machines >= 1 and config.num_processes >= 1


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_saves_a_loadable_model(path):
    """FSDP gathers a full state dict at save; ZeRO-3 gathers its partitions into 16-bit weights."""
    config = load_config_from_file(str(path))
    kind = config.distributed_type.value
    if kind == "FSDP":
        assert config.fsdp_config.get("fsdp_state_dict_type") == "FULL_STATE_DICT", (
            f"{path.name}: Trainer.save_model writes no consolidated model from a sharded state dict"
        )
    elif kind == "DEEPSPEED" and config.deepspeed_config.get("zero_stage") == 3:
        assert config.deepspeed_config.get("zero3_save_16bit_model") is True, (
            f"{path.name}: without zero3_save_16bit_model a ZeRO-3 save holds no weights from_pretrained loads"
        )
    else:
        pytest.skip(f"{path.name} ({kind}) holds the whole model on every rank: nothing to gather at save")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_is_exercised_on_cpu_or_by_the_gpu_smoke(path):
    if path.name in CPU_LAUNCHED:
        return
    reasons = _smoke_reasons()
    assert path.name in reasons, f"scripts/gpu_smoke.sh gives no reason why {path.name} is GPU-only"
    assert path.name in _smoke_configs(), f"scripts/gpu_smoke.sh does not run {path.name}"


def test_the_cpu_config_runs_one_cpu_process(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "recipes" / "accelerate_configs" / "cpu.yaml"),
    ]
    proc = subprocess.run(
        [*cmd, str(probe), str(tmp_path / "out.json")], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "out.json").read_text()) == {"type": "NO", "processes": 1}


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_gpu_smoke_flags_parse_in_every_recipe(recipe, tmp_path):
    module = importlib.import_module(f"recipes.{recipe}")
    for config in sorted(name.removesuffix(".yaml") for name in _smoke_configs()):
        argv = [*_smoke_recipe_args(recipe, config), "--output_dir", str(tmp_path)]
        module.make_parser().parse_args_and_config(argv)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_smoke_trains_and_reloads_every_recipe(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["bash", str(SMOKE), str(tmp_path)], env=env, capture_output=True, text=True, timeout=7200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for recipe in RECIPES:
        for config in sorted(name.removesuffix(".yaml") for name in _smoke_configs()):
            if config != "fsdp_qlora" or recipe == "qlora_multitask":  # 4-bit sharding is qlora_multitask's
                assert f"ok {recipe} {config}" in proc.stdout, proc.stdout[-4000:]
