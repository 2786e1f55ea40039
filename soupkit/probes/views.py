"""Views of a probe's embeddings: truncated Matryoshka dims and int8 / binary quantisation.

A view turns the full float embeddings of one probe into what a user would store: the first
`d` dimensions renormalised, or the int8 codes of sentence-transformers' `quantize_embeddings`
calibrated on the probe's own embeddings, or sign bits (hamming similarity is an affine map of
the dot product of +-1 vectors). Scores of a view are reported
as `<probe>@<view>`, e.g. `medical-icd10@256`, `medical-icd10@int8`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from soupkit.registry import Registry

Arrays = list[np.ndarray]
View = Callable[[Arrays], Arrays]


def truncate(dim: int) -> View:
    def view(arrays: Arrays) -> Arrays:
        out = []
        for x in arrays:
            t = x[:, :dim]
            out.append(t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12))
        return out

    return view


def int8(arrays: Arrays) -> Arrays:
    """sentence-transformers' int8 codes, calibrated on every embedding of the probe (per-dimension
    min/max), renormalised so that cosine similarity is computed on the codes."""
    from sentence_transformers import quantize_embeddings

    stacked = np.concatenate(arrays, axis=0)
    out = []
    for x in arrays:
        codes = quantize_embeddings(x, precision="int8", calibration_embeddings=stacked).astype(np.float32)
        out.append(codes / np.maximum(np.linalg.norm(codes, axis=1, keepdims=True), 1e-12))
    return out


def binary(arrays: Arrays) -> Arrays:
    out = []
    for x in arrays:
        bits = np.where(x > 0, 1.0, -1.0).astype(np.float32)
        out.append(bits / np.sqrt(bits.shape[1]))
    return out


QUANTIZATIONS: Registry[View] = Registry("quantization")
QUANTIZATIONS.add("int8", int8)
QUANTIZATIONS.add("binary", binary)


def views_for(dims: list[int], quantizations: list[str], width: int) -> dict[str, View]:
    """The views asked for, keyed by their suffix; dims at or above the model width are skipped."""
    views: dict[str, View] = {}
    for dim in sorted({d for d in dims if 0 < d < width}, reverse=True):
        views[str(dim)] = truncate(dim)
    for name in quantizations:
        views[name] = QUANTIZATIONS.get(name)
    return views
