"""distill-toolkit: turn a big teacher LLM into small, cheap students.

Importing the top-level package is deliberately cheap: no torch / transformers at import time. Submodules import
their hard dependencies (torch, transformers, peft, datasets, trl) at module top; only optional ones (bitsandbytes,
vllm, aiohttp) are imported lazily.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
