"""The multi-node launch lines of the README and the Slurm script are ones accelerate's own launcher accepts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "scripts" / "slurm_multinode.sbatch"
SECTION = "## Several GPUs and nodes"


def _readme_launch_lines() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, f"README has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.replace("\\\n", " ").splitlines() if line.startswith("accelerate launch ")]


def _parse_launch(argv: list[str]):
    """``accelerate launch`` arguments as accelerate parses them (an unknown flag is a SystemExit)."""
    return launch_command_parser().parse_args(argv)


def _gpu_configs() -> set[str]:
    configs = (REPO / "recipes" / "accelerate_configs").glob("*.yaml")
    return {path.name for path in configs if load_config_from_file(str(path)).distributed_type.value != "NO"}


def _assert_multinode(args) -> None:
    assert args.num_machines >= 2 and args.machine_rank is not None
    assert args.main_process_ip and args.main_process_port
    assert (REPO / args.config_file).is_file(), args.config_file
    assert (REPO / args.training_script).is_file(), args.training_script


def test_readme_has_a_multinode_line_for_every_gpu_config():
    lines = _readme_launch_lines()
    assert lines
    named = set()
    for line in lines:
        args = _parse_launch(shlex.split(line)[2:])
        _assert_multinode(args)
        named.add(Path(args.config_file).name)
    assert named == _gpu_configs()


def test_sbatch_asks_for_one_launcher_per_node():
    headers = dict(
        match.groups() for match in re.finditer(r"^#SBATCH\s+--([\w-]+)=(\S+)", SBATCH.read_text(), re.MULTILINE)
    )
    assert int(headers["nodes"]) >= 2 and headers["ntasks-per-node"] == "1"
    assert "gpus-per-node" in headers and "time" in headers


@pytest.fixture
def fake_slurm(tmp_path) -> Path:
    """``srun`` running its command as node 1 of 2, ``scontrol`` naming two hosts, ``accelerate`` recording argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "srun": '#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nSLURM_NODEID=1 exec "$@"\n',
        "scontrol": "#!/bin/bash\nprintf 'gpu-node-01\\ngpu-node-02\\n'\n",
        "accelerate": f'#!{sys.executable}\nimport json, sys\nwith open("{tmp_path}/argv.json", "w") as f:\n    json.dump(sys.argv[1:], f)\n',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    return tmp_path


def test_sbatch_launches_accelerate_with_each_nodes_rank(fake_slurm):
    env = {**os.environ, "PATH": f"{fake_slurm / 'bin'}:{os.environ['PATH']}", "SLURM_NNODES": "2"}
    env["SLURM_JOB_NODELIST"] = "gpu-node-[01-02]"
    recipe_args = ["--config", "recipes/configs/lmcor/wmt22_ende_gpu.yaml", "--run_name", "two words"]
    cmd = ["bash", str(SBATCH), "recipes/accelerate_configs/fsdp.yaml", "recipes/lmcor.py", *recipe_args]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    argv = json.loads((fake_slurm / "argv.json").read_text())
    assert argv[0] == "launch"
    args = _parse_launch(argv[1:])
    _assert_multinode(args)
    assert (args.num_machines, args.machine_rank, args.num_processes) == (2, 1, 16)
    assert args.main_process_ip == "gpu-node-01" and args.config_file.endswith("fsdp.yaml")
    assert args.training_script == "recipes/lmcor.py" and args.training_script_args == recipe_args
