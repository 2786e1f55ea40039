"""The paper's loss against plain in-batch contrastive: probe scores and step time, and whether the
spread-out regulariser helps int8 / binary retention.

    python bench/loss_ablation.py [--steps 30]

Each variant finetunes the bundled model on the default recipe's seed mixture with the same seed
and batches, then scores every probe at full precision and on int8 / binary codes. Prints the
objective per variant, the step-time ratio to plain contrastive, and the retention
(quantised objective / full objective).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from soupkit.base_model import load_model, use_bf16
from soupkit.config import LossSpec, load_recipe, seed_mixture_of
from soupkit.data.load import load_recipe_families
from soupkit.probes.score import ProbeSettings, objective_value, score_probes
from soupkit.train.finetune import finetune_on_mixture

VARIANTS = {
    "plain in-batch": LossSpec(hard_negatives=False, mask_duplicates=False, spread_out_weight=0.0),
    "paper (hard neg, mask)": LossSpec(hard_negatives=True, hard_negative_alpha=5.0, spread_out_weight=0.0),
    "paper + spread-out": LossSpec(hard_negatives=True, hard_negative_alpha=5.0, spread_out_weight=1.0),
    "paper + spread + MRL": LossSpec(hard_negatives=True, spread_out_weight=1.0, matryoshka_dims=[384, 256, 128, 64]),
}


def view_objective(scores: dict[str, float], suffix: str) -> float:
    return objective_value({k.split("@")[0]: v for k, v in scores.items() if k.endswith(suffix)}, {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    recipe = recipe.model_copy(update={
        "finetune": recipe.finetune.model_copy(update={"steps": args.steps}),
        "probes": recipe.probes.model_copy(update={"quantizations": ["int8", "binary"], "dims": [128]}),
    })
    families, _ = load_recipe_families(recipe)
    weights = seed_mixture_of(recipe).normalised()
    bf16 = use_bf16("cpu", recipe.finetune.bf16)
    tmp = Path(tempfile.mkdtemp(prefix="soupkit-loss-"))
    settings = ProbeSettings.from_recipe(recipe, bf16)

    base = score_probes(load_model(recipe.base, "cpu"), families, settings)
    rows = [("base model", None, base)]
    for name, loss in VARIANTS.items():
        spec = recipe.finetune.model_copy(update={"loss": loss})
        model = load_model(recipe.base, "cpu")
        result = finetune_on_mixture(model, families, weights, spec, tmp / name.replace(" ", "_"), recipe.seed, bf16)
        rows.append((name, result.seconds / result.steps, score_probes(model, families, settings)))

    plain_step = rows[1][1]
    print(f"{args.steps} steps, batch {recipe.finetune.batch_size}, bf16={bf16}")
    print(f"{'variant':26s} {'objective':>9s} {'@128':>7s} {'@int8':>7s} {'@binary':>8s} {'int8 ret':>8s} "
          f"{'bin ret':>8s} {'s/step':>7s} {'vs plain':>8s}")
    for name, step, scores in rows:
        full = objective_value(scores, {})
        q8, qb, d128 = view_objective(scores, "@int8"), view_objective(scores, "@binary"), view_objective(scores, "@128")
        timing = f"{step:7.2f} {step / plain_step:7.2f}x" if step else f"{'':7s} {'':8s}"
        print(f"{name:26s} {full:9.4f} {d128:7.4f} {q8:7.4f} {qb:8.4f} {q8 / full:8.3f} {qb / full:8.3f} {timing}")


if __name__ == "__main__":
    main()
