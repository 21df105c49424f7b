"""The recipes: one script per paper, importable (``python -m recipes.lmcor``) and launchable (``accelerate launch recipes/lmcor.py``)."""
