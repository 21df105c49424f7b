"""glibc heap tuning: memory freed by large tensors goes back to the OS instead of staying in the heap."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# A 24 MB block freed first makes glibc raise its mmap threshold to 24 MB; 40 x 8 MB tensors then come from the
# heap, each followed by a live 128 KB one, and freeing them leaves 320 MB in the middle of the heap.
PATTERN = """
import sys, torch
if sys.argv[1] == "tuned":
    from toolkit.training.allocator import return_large_frees_to_os
    assert return_large_frees_to_os()
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
big = torch.ones(6 * 2**20)
del big
base = rss_mb()
blocks, pins = [], []
for _ in range(40):
    blocks.append(torch.ones(2 * 2**20))
    pins.append(torch.ones(2**15))
del blocks
print(round(rss_mb() - base))
"""


def _kept_mb(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PATTERN, mode], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_tensor_memory_returns_to_the_os():
    assert _kept_mb("tuned") < 40  # only the live 128 KB tensors (5 MB) stay
    # The same pattern without the tuning keeps the freed blocks: the test would catch a no-op tuning.
    assert _kept_mb("default") > 200


@pytest.mark.parametrize(
    ("checkpointing", "explicit", "applied"), [(True, None, True), (False, None, False), (False, True, True)]
)
def test_make_trainer_tunes_the_heap_in_memory_mode(
    tiny_llama_dir, tmp_path, monkeypatch, checkpointing, explicit, applied
):
    # Returning freed memory costs page faults (CPU): only when checkpointing says memory matters, or when asked.
    from transformers import TrainingArguments

    from toolkit.models import students
    from toolkit.training import allocator, student_training

    calls = []
    monkeypatch.setattr(allocator, "return_large_frees_to_os", lambda *a, **k: calls.append(1) or True)
    model, tok, _ = students.load_student(str(tiny_llama_dir))
    args = TrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, activation_checkpointing=checkpointing
    )
    student_training.make_trainer(model, tok, args, [], return_freed_memory=explicit)
    assert bool(calls) == applied
