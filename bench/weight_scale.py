"""How big are a model's weights? AdamW moves each weight by about the learning rate per step, so
a learning rate means a larger relative change on a model with smaller weights.

    python bench/weight_scale.py [MODEL ...]   (default: the bundled MiniLM and the fetched EmbeddingGemma)

Reads the transformer's safetensors (no model is built) and prints, per kind of tensor, the
parameter count and the parameter-weighted median of |w|, then the ratio of the linear layers'.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def kind(name: str) -> str:
    if "norm" in name.lower():
        return "norm"
    if "word_embeddings" in name or "embed_tokens" in name:
        return "token embeddings"
    if "embeddings" in name:
        return "other embeddings"  # BERT's position and token-type tables
    return "bias" if name.endswith("bias") else "linear"


def scales(folder: Path) -> dict[str, tuple[int, float]]:
    from safetensors import safe_open

    groups: dict[str, list[tuple[int, float]]] = {}
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        for name in weights.keys():
            tensor = weights.get_tensor(name).float()
            groups.setdefault(kind(name), []).append((tensor.numel(), tensor.abs().median().item()))
    return {k: (sum(n for n, _ in v), sum(n * m for n, m in v) / sum(n for n, _ in v)) for k, v in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["bundled:all-MiniLM-L6-v2", "embeddinggemma-300m"])
    args = parser.parse_args()
    from soupkit.base_model import resolve_base

    linear = {}
    for model in args.models:
        folder = Path(resolve_base(model))
        for group, (count, median) in sorted(scales(folder).items()):
            print(f"{model:28s} {group:17s} {count / 1e6:8.2f}M params  weighted median |w| {median:.4f}")
            if group == "linear":
                linear[model] = median
    if len(linear) == 2:
        (a, wa), (b, wb) = linear.items()
        print(f"linear layers: median |w| of {a} / {b} = {wa / wb:.1f}x")


if __name__ == "__main__":
    main()
