"""Merging whole sentence-transformers model folders: soups that stream, mergekit methods in memory.

Importing this package is instant: torch, safetensors, sentence-transformers and mergekit are
imported inside the functions that need them.
"""

from soupkit.merge import (  # noqa: F401  (importing registers the methods)
    mergekit_backend,
    uniform,
    weighted,
)
from soupkit.merge.api import merge_models, parse_parameters, parse_weights
from soupkit.model_folder import ModelFolder, read_model_folder
from soupkit.merge.methods import METHODS, MergeJob, MergeMethod, merge_method
from soupkit.merge.record import MERGE_RECORD

__all__ = [
    "METHODS",
    "MERGE_RECORD",
    "MergeJob",
    "MergeMethod",
    "ModelFolder",
    "merge_method",
    "merge_models",
    "parse_parameters",
    "parse_weights",
    "read_model_folder",
]
