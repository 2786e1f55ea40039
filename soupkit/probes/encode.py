"""Encoding texts for probes: the model's own prompt, bf16 autocast where it helps, unit vectors."""

from __future__ import annotations

import numpy as np

from soupkit.base_model import autocast_context


def encode_texts(model, texts: list[str], prompt: str, batch_size: int, bf16: bool) -> np.ndarray:
    """Unit-normalised float32 embeddings of `texts`, each prefixed with `prompt`."""
    import torch

    if not texts:
        return np.zeros((0, model.get_embedding_dimension() or 0), dtype=np.float32)
    with torch.inference_mode(), autocast_context(str(model.device), bf16):
        emb = model.encode(
            texts,
            prompt=prompt or None,
            batch_size=batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    emb = emb.astype(np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.maximum(norms, 1e-12)
