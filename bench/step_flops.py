"""How fast a training step of a model can be on this machine: model FLOPs per step, and the floor.

    python bench/step_flops.py [--base embeddinggemma-300m] [--recipe medical] [--steps 24]
        [--measured 17.0] [--peak-tflops 989]

Plans the recipe's seed-mixture batches exactly as a trial does (`plan_batches`, batch 32, every
side of every example: anchor, positive, hard negative), tokenises them with the model's tokenizer
(padded to the longest text of each batch side, cut at `--seq`), and counts the model FLOPs of a
training step: 2 FLOPs per multiply-add of every linear weight but the token embeddings, per
token, plus attention's scores and weighted sums (per layer, per token, 4 x heads x head_dim x the
keys it attends to: the whole padded sequence, or the sliding window where that is shorter), the
Dense heads once per text; forward + backward = 3 x forward (weights and activations both get
gradients; frozen token embeddings cost no matmul either way).

Then times this machine's fp32 matrix multiply (torch.mm, the kernel a step spends its time in)
and prints the floor: FLOPs per step / that rate, against `--measured` s/step when given (the
utilisation) and against the issue's goal of 3 s. With `--peak-tflops` (a GPU's bf16 peak) it
prints model-FLOPs utilisation for a measured GPU step instead. Reads only the tokenizer, the
config and the safetensors' tensor shapes: no weights are loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

GOAL_SECONDS = 3.0


def linear_parameters(folder: Path) -> tuple[int, int]:
    """(parameters of the transformer's 2-D weights but the token embeddings, Dense heads' ones),
    from the safetensors headers alone."""
    from safetensors import safe_open

    def count(path: Path, skip: str | None = None) -> int:
        with safe_open(str(path), "pt") as f:
            shapes = [f.get_slice(k).get_shape() for k in f.keys() if skip is None or skip not in k]
        return sum(a * b for a, b in (s for s in shapes if len(s) == 2))

    transformer = count(folder / "model.safetensors", skip="embed_tokens")
    heads = sum(count(p) for p in sorted(folder.glob("*_Dense/model.safetensors")))
    return transformer, heads


def attention_flops(config: dict, length: int) -> int:
    """Forward FLOPs of attention's QK^T and AV for one token of a `length`-token sequence."""
    heads = config["num_attention_heads"] * config.get("head_dim", config["hidden_size"] // config["num_attention_heads"])
    window = config.get("sliding_window") or length
    layers = config.get("layer_types") or ["full_attention"] * config["num_hidden_layers"]
    return sum(4 * heads * (min(window, length) if kind == "sliding_attention" else length) for kind in layers)


def step_token_counts(recipe_name: str, tokenizer, prompts: dict, steps: int, batch_size: int,
                      seq: int) -> list[list[tuple[int, int]]]:
    """Per planned step, (texts, padded length) of each side the loss encodes."""
    from soupkit.config import load_recipe, seed_mixture_of
    from soupkit.data.family import ASYMMETRIC_TASKS
    from soupkit.data.load import load_recipe_families
    from soupkit.prompts import prompt_for
    from soupkit.train.batches import plan_batches

    recipe = load_recipe(recipe_name)
    families, _ = load_recipe_families(recipe)
    weights = seed_mixture_of(recipe).normalised()
    use_negatives = recipe.finetune.loss.hard_negatives
    counts = []
    for batch in plan_batches(families, weights, steps, batch_size, recipe.seed):
        task = families[batch.family].task
        query = prompt_for(prompts, task, "query")
        doc = prompt_for(prompts, task, "document") if task in ASYMMETRIC_TASKS else query
        positives = [e.positive for e in batch.examples]
        sides = [(query, [e.anchor for e in batch.examples]), (doc, positives)]
        if use_negatives and any(e.negative for e in batch.examples):  # as batch_features: every row gets one
            sides.append((doc, [e.negative or positives[(i + 1) % len(positives)] for i, e in enumerate(batch.examples)]))
        step = []
        for prompt, texts in sides:
            ids = tokenizer([prompt + t for t in texts], truncation=True, max_length=seq)["input_ids"]
            step.append((len(texts), max(len(i) for i in ids)))
        counts.append(step)
    return counts


def matmul_gflops(seconds: float = 3.0, n: int = 1024, k: int = 4096) -> float:
    """This machine's fp32 torch.mm rate on a training-sized product (tokens x hidden x hidden)."""
    import torch

    a, b = torch.randn(n, k), torch.randn(k, n)
    torch.mm(a, b)
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n * k * n / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="embeddinggemma-300m")
    parser.add_argument("--recipe", default="medical")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--measured", type=float, help="a measured step, seconds (bench/gemma_step.py)")
    parser.add_argument("--peak-tflops", type=float, help="the chip's peak bf16 TFLOP/s: print MFU, not the CPU floor")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from soupkit.base_model import resolve_base

    folder = Path(resolve_base(args.base))
    config = json.loads((folder / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    transformer, heads = linear_parameters(folder)
    st_config = folder / "config_sentence_transformers.json"
    prompts = json.loads(st_config.read_text()).get("prompts", {}) if st_config.exists() else {}
    steps = step_token_counts(args.recipe, tokenizer, prompts, args.steps, args.batch_size, args.seq)
    per_step = []
    for step in steps:
        forward = sum(texts * (length * (2 * transformer + attention_flops(config, length)) + 2 * heads)
                      for texts, length in step)
        per_step.append(3 * forward)
    flops = statistics.mean(per_step)
    tokens = statistics.mean(sum(texts * length for texts, length in step) for step in steps)
    print(f"{args.base}: {transformer / 1e6:.1f}M linear parameters (token embeddings excluded), "
          f"Dense heads {heads / 1e6:.1f}M")
    print(f"{args.recipe} seed mixture, {args.steps} steps, batch {args.batch_size}, seq {args.seq}: "
          f"{tokens:.0f} padded tokens per step (min {min(sum(t * n for t, n in s) for s in steps)}, "
          f"max {max(sum(t * n for t, n in s) for s in steps)}), "
          f"{flops / 1e12:.2f} TFLOP per training step (forward + backward)")
    if args.peak_tflops:
        if args.measured:
            print(f"model-FLOPs utilisation at {args.measured:.3f} s/step: "
                  f"{flops / args.measured / (args.peak_tflops * 1e12):.1%} of {args.peak_tflops:.0f} TFLOP/s")
        return
    rate = matmul_gflops()
    floor = flops / (rate * 1e9)
    print(f"this machine's fp32 matmul: {rate:.0f} GFLOP/s (torch.mm 1024x4096 @ 4096x1024, median)")
    print(f"floor: {floor:.1f} s/step at 100% of that rate; the goal {GOAL_SECONDS:.0f} s/step is "
          f"{floor / GOAL_SECONDS:.1f}x below the floor" if floor > GOAL_SECONDS else
          f"floor: {floor:.1f} s/step; the goal {GOAL_SECONDS:.0f} s/step is reachable in principle")
    if args.measured:
        print(f"measured {args.measured:.1f} s/step = {floor / args.measured:.0%} of the matmul rate")


if __name__ == "__main__":
    main()
