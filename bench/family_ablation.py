"""Which families (and weights) help a domain recipe: one finetune per candidate mixture.

    python bench/family_ablation.py --recipe medical --base bundled:all-MiniLM-L6-v2

Every variant finetunes the same base model, with the recipe's seed, steps and loss, on one
mixture over the recipe's families, and is scored on all of the recipe's probes. Held-out
(probe-only) probes are scored on their *selection* halves only, as a search would: the test
halves stay unread for the final report (bench/domain_table.py). Prints a Markdown table: the
domain and general means, and each held-out and general probe as a difference from the base model,
in points. One seed and one mixture per variant: a screen that says which families to keep, not
a verdict (on a few hundred items, differences under about a point are noise).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from soupkit.base_model import load_model, pick_device, use_bf16
from soupkit.config import load_recipe, seed_mixture_of
from soupkit.data.load import load_recipe_families
from soupkit.probes.score import ProbeSettings, score_probes, study_values
from soupkit.train.finetune import finetune_on_mixture

GENERAL = {"general-retrieval": 2, "paraphrase": 1, "code-search": 1}
ICD = {"medical-icd10": 2, "medical-icd10-chapters": 1, "medical-icd10-names": 1, "medical-pcs-operations": 1,
       "medical-abbreviations": 2}
DEFINITIONS = {"medical-diseases": 2, "medical-anatomy": 1, "medical-cell-types": 1, "medical-go": 1}
LICENCES = {"legal-licences": 2, "legal-licence-categories": 1, "legal-courts": 1}

# name -> mixture (unnormalised weights); "seed" is the recipe's own seed mixture
VARIANTS = {
    "medical": {
        "ICD + general (before this issue)": {**ICD, **GENERAL},
        "ICD + definitions + general": {**ICD, **DEFINITIONS, **GENERAL},
        "definitions + general": {**DEFINITIONS, **GENERAL},
        "diseases + general": {"medical-diseases": 4, **GENERAL},
        "ICD + excludes + general": {**ICD, "medical-icd10-excludes": 2, **GENERAL},
        "ICD/2 + definitions x2 + general": {**{k: v / 2 for k, v in ICD.items()},
                                              **{k: 2 * v for k, v in DEFINITIONS.items()}, **GENERAL},
    },
    "legal": {
        "licences + courts + general (before this issue)": {**LICENCES, "general-retrieval": 1, "paraphrase": 0.5,
                                                            "code-search": 0.5},
        "+ licence clauses": {**LICENCES, "legal-licence-clauses": 2, **GENERAL},
        "+ disease definitions": {**LICENCES, "medical-diseases": 2, **GENERAL},
        "+ clauses + definitions": {**LICENCES, "legal-licence-clauses": 2, "medical-diseases": 2, **GENERAL},
        "definitions + general only": {"medical-diseases": 2, **GENERAL},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True, help="medical or legal (a recipe name or path)")
    parser.add_argument("--base", default=None, help="replace the recipe's base model")
    parser.add_argument("--variants", default=None, help="which variant set (default: the recipe's name)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these variants (by name)")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    updates = {"base": args.base} if args.base else {}
    if args.steps:
        updates["finetune"] = recipe.finetune.model_copy(update={"steps": args.steps})
    recipe = recipe.model_copy(update=updates)
    variants = VARIANTS[args.variants or recipe.name]
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only}

    start = time.perf_counter()
    families, probes = load_recipe_families(recipe)
    data_seconds = time.perf_counter() - start
    device = pick_device()
    bf16 = use_bf16(device, recipe.finetune.bf16)
    settings = ProbeSettings.from_recipe(recipe, bf16)
    model = load_model(recipe.base, device)
    base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base = score_probes(model, probes, settings)
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="soupkit-ablation-"))
    try:
        for name, mixture in variants.items():
            weights = seed_mixture_of(recipe).normalised() if mixture == "seed" else mixture
            missing = [f for f in weights if f not in families]
            if missing:
                raise SystemExit(f"variant '{name}': family '{missing[0]}' is not in the recipe's families")
            model.load_state_dict(base_state)
            t0 = time.perf_counter()
            finetune_on_mixture(model, families, weights, recipe.finetune, scratch / "model", recipe.seed, bf16)
            rows.append((name, score_probes(model, probes, settings), time.perf_counter() - t0))
            shutil.rmtree(scratch / "model", ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(recipe, base, rows, data_seconds)


def print_table(recipe, base: dict, rows: list, data_seconds: float) -> None:
    held_out = recipe.probe_names_only()
    general = [p for p in base if "@" not in p and p not in recipe.objective.domain]
    columns = held_out + [p for p in general if p not in held_out]
    base_domain, base_general = study_values(base, recipe.objective)
    print(f"recipe {recipe.name}, base {recipe.base}, {recipe.finetune.steps} steps, seed {recipe.seed}; "
          f"families built in {data_seconds:.0f}s; held-out probes (*) on their selection halves\n")
    print("| variant | domain | general | " + " | ".join(f"{p}{'*' if p in held_out else ''}" for p in columns)
          + " | s |")
    print("|" + "---|" * (len(columns) + 4))
    print(f"| base model | {base_domain:.4f} | {base_general:.4f} | "
          + " | ".join(f"{100 * base[p]:.1f}" for p in columns) + " | |")
    for name, scores, seconds in rows:
        domain, general_value = study_values(scores, recipe.objective)
        cells = [f"{100 * (scores[p] - base[p]):+.1f}" for p in columns]
        print(f"| {name} | {domain:.4f} ({100 * (domain - base_domain):+.1f}) | "
              f"{general_value:.4f} ({100 * (general_value - base_general):+.1f}) | " + " | ".join(cells)
              + f" | {seconds:.0f} |")


if __name__ == "__main__":
    main()
