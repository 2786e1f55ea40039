"""Model builders: architectures soupkit must support, built offline with random weights.

Importing this package is cheap; torch, transformers and sentence-transformers load only when a
builder runs.
"""

from soupkit.models.embeddinggemma import build_embeddinggemma

__all__ = ["build_embeddinggemma"]
