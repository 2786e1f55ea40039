"""Is bf16 autocast worth it on this machine? Finetune and probe speed, and the scores, fp32 vs bf16.

    python bench/bf16.py [--steps 20]

Runs the same finetune (default recipe's seed mixture, same seed) and the same probe pass once in
fp32 and once under bf16 autocast, in this process, and prints the time ratios and score deltas.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from soupkit.base_model import cpu_has_bf16, load_model
from soupkit.config import load_recipe, seed_mixture_of
from soupkit.data.load import load_recipe_families
from soupkit.probes.score import ProbeSettings, objective_value, score_probes
from soupkit.train.finetune import finetune_on_mixture


def run(recipe, families, weights, bf16: bool, out: Path) -> tuple[float, float, dict[str, float]]:
    model = load_model(recipe.base, "cpu")
    result = finetune_on_mixture(model, families, weights, recipe.finetune, out, recipe.seed, bf16)
    start = time.perf_counter()
    scores = score_probes(model, families, ProbeSettings.from_recipe(recipe, bf16))
    return result.seconds / result.steps, time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    recipe = recipe.model_copy(update={"finetune": recipe.finetune.model_copy(update={"steps": args.steps})})
    families, _ = load_recipe_families(recipe)
    weights = seed_mixture_of(recipe).normalised()
    tmp = Path(tempfile.mkdtemp(prefix="soupkit-bf16-"))
    step32, probe32, scores32 = run(recipe, families, weights, False, tmp / "fp32")
    step16, probe16, scores16 = run(recipe, families, weights, True, tmp / "bf16")
    print(f"cpu has bf16 units: {cpu_has_bf16()}")
    print(f"finetune s/step  fp32 {step32:.2f}  bf16 {step16:.2f}  ratio bf16/fp32 {step16 / step32:.2f}x")
    print(f"probe pass s     fp32 {probe32:.1f}  bf16 {probe16:.1f}  ratio bf16/fp32 {probe16 / probe32:.2f}x")
    for name in scores32:
        print(f"  {name:24s} fp32 {scores32[name]:.4f}  bf16 {scores16[name]:.4f}  delta {scores16[name] - scores32[name]:+.4f}")
    w = recipe.objective.weights
    print(f"objective        fp32 {objective_value(scores32, w):.4f}  bf16 {objective_value(scores16, w):.4f}")


if __name__ == "__main__":
    main()
