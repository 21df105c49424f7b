"""The papers' methods only: input formats, selectors, losses, pooling, heads (one module per recipe)."""
