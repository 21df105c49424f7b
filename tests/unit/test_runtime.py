"""toolkit.runtime: thread count rule (explicit > TOOLKIT_NUM_THREADS > accelerate default > OMP > cores)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from toolkit.runtime import configure_threads, resolve_num_threads

ACCEL = {"ACCELERATE_DYNAMO_BACKEND": "NO", "OMP_NUM_THREADS": "1"}  # what accelerate launch exports


def test_accelerate_launch_default_of_one_thread_is_overridden():
    assert resolve_num_threads(env=ACCEL, cores=2)[0] == 2
    assert resolve_num_threads(env=ACCEL, cores=16)[0] == 16


def test_processes_on_a_node_divide_the_cores():
    assert resolve_num_threads(env={**ACCEL, "LOCAL_WORLD_SIZE": "2"}, cores=2)[0] == 1
    assert resolve_num_threads(env={**ACCEL, "LOCAL_WORLD_SIZE": "4"}, cores=16)[0] == 4
    assert resolve_num_threads(env={"LOCAL_WORLD_SIZE": "3"}, cores=2)[0] == 1  # never 0


def test_user_choice_wins():
    assert resolve_num_threads(env={**ACCEL, "TOOLKIT_NUM_THREADS": "1"}, cores=8)[0] == 1
    assert resolve_num_threads(3, env={**ACCEL, "TOOLKIT_NUM_THREADS": "1"}, cores=8)[0] == 3
    # a plain python run honours the user's OMP_NUM_THREADS
    assert resolve_num_threads(env={"OMP_NUM_THREADS": "1"}, cores=8)[0] == 1
    assert resolve_num_threads(env={}, cores=8)[0] == 8


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_bad_values_are_named(bad):
    with pytest.raises(ValueError, match="TOOLKIT_NUM_THREADS"):
        resolve_num_threads(env={"TOOLKIT_NUM_THREADS": bad}, cores=2)


def test_configure_threads_sets_torch_in_a_launched_process():
    # a fresh interpreter with accelerate's child environment: torch must end up on every core given
    code = "from toolkit.runtime import configure_threads; import torch; configure_threads(); print(torch.get_num_threads())"
    env = {**ACCEL, "PATH": "", "TOOLKIT_NUM_THREADS": "", "LOCAL_WORLD_SIZE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    from toolkit.runtime import available_cores

    assert int(out.stdout.strip()) == available_cores()


def test_configure_threads_explicit(monkeypatch):
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # restored after: configure_threads exports its choice

    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
