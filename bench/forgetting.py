"""Does training only the top forget less? `all` against `top:<k>` at given step counts.

    python bench/forgetting.py [--base bundled] [--recipe medical] [--train all,top:8,top:4,top:2]
        [--steps 24,240] [--batch-size N] [--seed-mixture NAME] [--out DIR] [--csv FILE]

A setting may name its own step counts: `--train all@24,top:4` trains `all` for 24 steps only
(on EmbeddingGemma on a CPU, `all` for 240 steps is half an hour).

For each setting and step count: the recipe's seed mixture finetuned from the base (as a trial,
seed the recipe's), its checkpoint kept under --out (default a temporary folder; an existing one
is reused, so a second table costs only its probe passes), scored on the recipe's probes (the
selection halves the search sees). Prints, per model, the domain and general means (a pareto
recipe; else the objective) and every probe as a difference from the base in points; then every
probe's test half (read by nothing else), trained families and held-out ones, as the difference
from the base with its 95% paired-bootstrap interval: the verdict of `soupkit eval`
(soupkit.soups.verdict, as bench/domain_table.py), one per setting so each scores on its own trunk
cache. `--csv` writes the test-half verdicts (one row per model and probe). The issue's goal: a
setting with a domain gain of at least +3 points, every test half's difference at or above -0.5
and every general probe within 1 point. `top:<k>` settings share one trunk cache per k.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="Base model (default: the recipe's; bundled MiniLM).")
    parser.add_argument("--recipe", default="medical")
    parser.add_argument("--train", default="all,top:8,top:4,top:2", help="Comma-separated settings.")
    parser.add_argument("--steps", default="24,240", help="Comma-separated step counts.")
    parser.add_argument("--batch-size", type=int, default=None, help="Batch size (default: the recipe's).")
    parser.add_argument("--seed-mixture", default=None, help="Mixture to train (default: the recipe's seed mixture).")
    parser.add_argument("--out", type=Path, default=None, help="Folder for the checkpoints (kept, reused).")
    parser.add_argument("--csv", type=Path, default=None, help="Write the test-half verdicts here.")
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
    default_steps = [int(s) for s in args.steps.split(",") if s]
    settings = {}
    for item in dict.fromkeys(s for s in args.train.split(",") if s):
        setting, _, steps = item.partition("@")
        settings[setting] = [int(n) for n in steps.split("+")] if steps else default_steps
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
    for setting, step_counts in settings.items():
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
    test_half_table(recipe, folders, trains, device, args.csv)


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


def test_half_table(recipe, folders: dict[str, str], trains: dict[str, str], device: str,
                    csv_path: Path | None) -> None:
    """Every probe's test half: `soupkit eval`'s verdict of the models of each setting against the
    base, the base scored on that setting's trunk cache too (its numbers equal the uncached ones)."""
    from domain_table import print_verdict_rows
    from soupkit.soups.verdict import evaluate_models

    records = []
    for setting in dict.fromkeys(trains[label] for label in folders if label != "base"):
        labels = {folders[label]: label for label in folders if label != "base" and trains[label] == setting}
        verdict = evaluate_models(list(labels), recipe, base=folders["base"], split="test", device=device,
                                  train=setting)
        records += [(labels[r.model], r) for r in verdict.records]
    if not records:
        return
    intro = ("Test halves of every probe (read by nothing else; `soupkit eval --split test`): the base's score, then "
             "each model's difference from it, points, 95% paired-bootstrap interval (* beyond the noise; "
             "! = a held-out probe below -0.5)")
    print_verdict_rows(records, "base", set(recipe.probe_names_only()), intro, mark_held_out_losses=True)
    if csv_path:
        import csv

        with open(csv_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["model", "train", "probe", "role", "items", "base_score", "score", "difference", "low", "high"])
            for label, r in records:
                writer.writerow([label, trains[label], r.probe, r.role, r.items, r.base_score, r.score,
                                 r.difference, r.low, r.high])


if __name__ == "__main__":
    main()
