"""Multi-task QLoRA model card: what the method is and the papers to cite."""

from __future__ import annotations

DESCRIPTION = (
    "One causal LM fine-tuned with a 4-bit NF4 + LoRA (QLoRA) adapter on a weighted mixture of classification, "
    "intent and slot-filling tasks, each an instruction with a parseable answer (Zhao et al. 2024)."
)

CITATION = """@misc{zhao2024advancing,
  title = {Advancing Single- and Multi-task Text Classification through Large Language Model Fine-tuning},
  author = {Zhao, Hang and Chen, Qile P. and Zhang, Yijing Barry and Yang, Gang},
  year = {2024},
  eprint = {2412.08587},
  archivePrefix = {arXiv}
}
@inproceedings{dettmers2023qlora,
  title = {{QLoRA}: Efficient Finetuning of Quantized {LLMs}},
  author = {Dettmers, Tim and Pagnoni, Artidoro and Holtzman, Ari and Zettlemoyer, Luke},
  booktitle = {Advances in Neural Information Processing Systems},
  volume = {36},
  year = {2023}
}"""

__all__ = ["CITATION", "DESCRIPTION"]
