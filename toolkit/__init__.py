"""distill-toolkit: turn a big teacher LLM into small, cheap students.

Importing the top-level package is deliberately cheap: no torch / transformers at import time.
Submodules (``toolkit.models``, ``toolkit.lmcor`` ...) import their heavy dependencies lazily.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
