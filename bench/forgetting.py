"""Does training only the top forget less? `all` against `top:<k>` at given step counts.

    python bench/forgetting.py [--base bundled] [--recipe medical] [--train all,top:8,top:4,top:2]
        [--steps 24,240] [--batch-size N] [--seed-mixture NAME] [--out DIR]

For each setting and step count: the recipe's seed mixture finetuned from the base (as a trial,
seed the recipe's), its checkpoint kept under --out (default a temporary folder; an existing one
is reused, so a second table costs only its probe passes), scored on the recipe's probes (the
selection halves the search sees). Prints, per model, the domain and general means (a pareto
recipe; else the objective) and every probe as a difference from the base in points; then every
held-out probe's test half (read by nothing else) as the difference from the base with its 95%
paired-bootstrap interval (soupkit.soups.compare, as bench/domain_table.py). The issue's goal: a
setting with a domain gain of at least +3 points, every test half's difference at or above -0.5
and every general probe within 1 point. `top:<k>` settings share one trunk cache per k.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="Base model (default: the recipe's; bundled MiniLM).")
    parser.add_argument("--recipe", default="medical")
    parser.add_argument("--train", default="all,top:8,top:4,top:2", help="Comma-separated settings.")
    parser.add_argument("--steps", default="24,240", help="Comma-separated step counts.")
    parser.add_argument("--batch-size", type=int, default=None, help="Batch size (default: the recipe's).")
    parser.add_argument("--seed-mixture", default=None, help="Mixture to train (default: the recipe's seed mixture).")
    parser.add_argument("--out", type=Path, default=None, help="Folder for the checkpoints (kept, reused).")
    args = parser.parse_args()

    from soupkit.base_model import load_model, pick_device, use_bf16
    from soupkit.config import load_mixture, load_recipe, seed_mixture_of, with_overrides
    from soupkit.data.load import load_recipe_families
    from soupkit.models.fetch import same_model
    from soupkit.models.trunk import join_trunk_cache
    from soupkit.probes.score import ProbeSettings, score_probes
    from soupkit.train.finetune import base_weights, finetune_on_mixture

    recipe = load_recipe(args.recipe)
    recipe = with_overrides(recipe, {"base": ("--base", args.base)}).for_base(same_model)
    recipe = with_overrides(recipe, {"finetune.batch_size": ("--batch-size", args.batch_size)})
    settings = [s for s in dict.fromkeys(args.train.split(",")) if s]
    step_counts = [int(s) for s in args.steps.split(",") if s]
    out = args.out or Path(tempfile.mkdtemp(prefix="forgetting-"))
    families, probes = load_recipe_families(recipe)
    mixture = load_mixture(args.seed_mixture) if args.seed_mixture else seed_mixture_of(recipe)
    weights = mixture.normalised() if mixture else {name: 1 / len(families) for name in families}
    device = pick_device()
    bf16 = use_bf16(device, recipe.finetune.bf16)
    probe_settings = ProbeSettings.from_recipe(recipe, bf16)
    print(f"base {recipe.base}, recipe {recipe.name}, batch {recipe.finetune.batch_size}, bf16 {bf16}; "
          f"checkpoints in {out}", flush=True)

    scores = {"base": score_probes(load_model(recipe.base, device), probes, probe_settings)}
    folders = {"base": recipe.base}
    trains = {"base": "all"}
    for setting in settings:
        model = base_state = None
        for steps in step_counts:
            label, folder = f"{setting} {steps} steps", out / f"{setting.replace(':', '')}-{steps}"
            spec = with_overrides(recipe, {"finetune.train": ("--train", setting),
                                           "finetune.steps": ("--steps", steps)}).finetune
            if not folder.is_dir():
                if model is None:
                    model = load_model(recipe.base, device)
                    base_state = base_weights(model, spec)
                model.load_state_dict(base_state)
                finetune_on_mixture(model, families, weights, spec, folder, recipe.seed, bf16)
                print(f"  trained {label}", flush=True)
            trained = load_model(str(folder), device)
            join_trunk_cache(trained, setting, recipe.base)
            scores[label] = score_probes(trained, probes, probe_settings)
            folders[label], trains[label] = str(folder), setting
        del model, base_state

    selection_table(recipe, scores)
    test_half_table(recipe, folders, trains, device)


def selection_table(recipe, scores: dict[str, dict[str, float]]) -> None:
    from soupkit.probes.score import objective_value, pareto_values

    base = scores["base"]
    names = [p for p in base if "@" not in p]
    pareto = bool(recipe.objective.domain)
    means = ["domain", "general"] if pareto else ["objective"]
    held_out = set(recipe.probe_names_only())
    print("\nSelection halves (what the search sees): the base's scores, then each model's difference, points\n")
    print("| model | " + " | ".join(means + [f"{p}{'*' if p in held_out else ''}" for p in names]) + " |")
    print("|" + "---|" * (len(means) + len(names) + 1))
    for label, values in scores.items():
        summary = (pareto_values(values, recipe.objective.weights, recipe.objective.domain) if pareto
                   else (objective_value(values, recipe.objective.weights),))
        base_summary = (pareto_values(base, recipe.objective.weights, recipe.objective.domain) if pareto
                        else (objective_value(base, recipe.objective.weights),))
        if label == "base":
            cells = [f"{100 * v:.1f}" for v in summary] + [f"{100 * values[p]:.1f}" for p in names]
        else:
            cells = ([f"{100 * (v - b):+.1f}" for v, b in zip(summary, base_summary)]
                     + [f"{100 * (values[p] - base[p]):+.1f}" for p in names])
        print(f"| {label} | " + " | ".join(cells) + " |")


def test_half_table(recipe, folders: dict[str, str], trains: dict[str, str], device: str) -> None:
    from soupkit.data.load import load_held_out_test_halves
    from soupkit.soups.compare import differences, item_scores

    halves = load_held_out_test_halves(recipe)
    if not halves:
        print("\n(the recipe has no held-out probes: no test halves)")
        return
    items = {}
    for label, folder in folders.items():  # each model scored with its own trunk cache, if it has one
        setting_recipe = recipe.model_copy(update={"finetune": recipe.finetune.model_copy(update={"train": trains[label]})})
        items.update(item_scores({label: folder}, halves, setting_recipe, device))
    names = [n for n in halves if items["base"][n] is not None]
    print("\nHeld-out probes, test halves: the base's score, then each model's difference from it, points, "
          "95% paired-bootstrap interval (! = below -0.5 at its lower bound)\n")
    print("| model | " + " | ".join(f"{n}* test half ({len(items['base'][n])} items)" for n in names) + " |")
    print("|" + "---|" * (len(names) + 1))
    print("| base | " + " | ".join(f"{100 * items['base'][n].mean():.1f}" for n in names) + " |")
    for label in list(folders)[1:]:
        found = {d.probe: d for d in differences(items, label, ["base"], seed=recipe.seed)}
        print(f"| {label} | " + " | ".join(found[n].cell() + (" !" if found[n].low < -0.005 else "")
                                            for n in names) + " |")


if __name__ == "__main__":
    main()
