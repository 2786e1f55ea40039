"""The results table of a domain (pareto) search: base model vs best single trial vs its soups.

    python bench/domain_table.py --out runs/medical

Rows: the base model; the best single trial (the best domain score among trials whose general
score stays within 1 point of the base's, else the best domain score); every soup recorded in the
study. Columns: domain and general weighted means, then each probe (probe-only ones marked *).
Prints Markdown, ready for docs/recipes.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna

from soupkit.config import Recipe
from soupkit.probes.score import study_values
from soupkit.search.study import default_storage, open_storage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    storage = open_storage(default_storage(args.out))
    (summary,) = optuna.get_all_study_summaries(storage, include_best_trial=False)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    recipe = Recipe.model_validate(json.loads(study.user_attrs["recipe"]))

    base_scores = study.user_attrs["base_scores"]
    base_domain, base_general = study_values(base_scores, recipe.objective)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    keeps_general = [t for t in done if t.values[1] >= base_general - 0.01]
    best = max(keeps_general or done, key=lambda t: t.values[0])

    rows = [("base model", base_scores), (f"best single trial (#{best.number})", best.user_attrs["scores"])]
    for name, soup in (study.user_attrs.get("soups") or {}).items():
        rows.append((f"soup {name} (trials {soup['members']})", soup["scores"]))

    probes = [p for p in base_scores if "@" not in p]
    held_out = set(recipe.probe_names_only())
    header = ["model", "domain", "general"] + [f"{p}{'*' if p in held_out else ''}" for p in probes]
    print(f"study {study.study_name}: {len(done)} complete trials; * = probe-only family (never trained on)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, scores in rows:
        domain, general = study_values(scores, recipe.objective)
        cells = [label, f"{domain:.4f}", f"{general:.4f}"] + [f"{scores[p]:.3f}" for p in probes]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
