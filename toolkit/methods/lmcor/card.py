"""LMCor model card: what the method is and the paper to cite."""

from __future__ import annotations

DESCRIPTION = (
    "An LMCor corrector (Vernikos et al. 2023): a small model trained to read an input and k candidate outputs of a "
    "large model and rewrite them into one better output, at the cost of one small forward pass per input."
)

CITATION = """@inproceedings{vernikos-etal-2024-small,
  title = {Small Language Models Improve Giants by Rewriting Their Outputs},
  author = {Vernikos, Giorgos and Bra{\\v{z}}inskas, Arthur and Adamek, Jakub and Mallinson, Jonathan and
            Severyn, Aliaksei and Malmi, Eric},
  booktitle = {Proceedings of the 18th Conference of the European Chapter of the Association for Computational
               Linguistics (Volume 1: Long Papers)},
  year = {2024}
}"""

__all__ = ["CITATION", "DESCRIPTION"]
