"""soupkit: adapt small text-embedding models to a domain by mixture search and model soups.

Heavy libraries (torch, sentence-transformers, optuna) are imported lazily inside the functions
that need them, so `soupkit --help` and `soupkit validate` stay instant.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
