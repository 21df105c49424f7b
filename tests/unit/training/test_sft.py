"""toolkit.training.sft: what a run records about its processes, and the adapters' dtype."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from accelerate.utils import DistributedType

from toolkit.training.sft import distributed_info, keep_adapters_fp32


class Wrapper(torch.nn.Module):
    """Stands in for the class a launcher wraps the model in (DDP, FSDP)."""


def test_distributed_info_names_what_actually_ran():
    accelerator = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, num_processes=2)
    trainer = SimpleNamespace(accelerator=accelerator, model_wrapped=Wrapper())
    assert distributed_info(trainer) == {"distributed_type": "MULTI_CPU", "num_processes": 2, "wrapper": "Wrapper"}


def test_keep_adapters_fp32_upcasts_only_trainable_bf16_weights():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)).to(torch.bfloat16)
    model[0].requires_grad_(False)
    keep_adapters_fp32(model)
    assert model[0].weight.dtype == torch.bfloat16  # frozen base weights keep their dtype
    assert model[1].weight.dtype == torch.float32 and model[1].bias.dtype == torch.float32
