"""LLMEmbed model card: what the method is and the paper to cite."""

from __future__ import annotations

DESCRIPTION = (
    "LLMEmbed (Liu et al., 2024): hidden states of several layers of a frozen lightweight LLM, mean-pooled over the "
    "real tokens, are fused with a sentence encoder's embedding (co-occurrence pooling of the projected views plus "
    "the layer mean) and fed to a small MLP classifier; only that head is trained."
)

CITATION = """@inproceedings{liu-etal-2024-llmembed,
  title = {{LLMEmbed}: Rethinking Lightweight {LLM}'s Genuine Function in Text Classification},
  author = {Liu, Chun and Zhang, Hongguang and Zhao, Kainan and Ju, Xinghai and Yang, Lin},
  booktitle = {Proceedings of the 62nd Annual Meeting of the Association for Computational Linguistics
               (Volume 1: Long Papers)},
  year = {2024}
}"""

__all__ = ["CITATION", "DESCRIPTION"]
