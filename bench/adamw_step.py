"""AdamW's step on about EmbeddingGemma's trainable size: torch's default loop vs the fused kernel.

    python bench/adamw_step.py

100 tensors of 1152 x 768 floats (88M parameters, about the 101M of EmbeddingGemma's linear
layers, which train when the token embeddings are frozen) with random gradients: seconds per
AdamW step (mean of 3 after one warm-up step) for the default, fused and plain-loop
implementations, and for clip_grad_norm_.
"""

from __future__ import annotations

import time

import torch


def main() -> None:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(1152 * 768)) for _ in range(100)]
    for p in params:
        p.grad = torch.randn_like(p)
    seconds = {}
    for name, options in (("default (foreach)", {}), ("fused", {"fused": True}), ("for-loop", {"foreach": False})):
        optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, **options)
        optimizer.step()
        start = time.perf_counter()
        for _ in range(3):
            optimizer.step()
        seconds[name] = (time.perf_counter() - start) / 3
        print(f"AdamW {name:18s} {seconds[name]:.2f} s/step")
        del optimizer
    start = time.perf_counter()
    for _ in range(3):
        torch.nn.utils.clip_grad_norm_(params, 1.0)
    print(f"clip_grad_norm_          {(time.perf_counter() - start) / 3:.2f} s")
    print(f"fused / default: {seconds['fused'] / seconds['default (foreach)']:.2f}x")


if __name__ == "__main__":
    main()
