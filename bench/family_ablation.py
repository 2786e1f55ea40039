"""Which families (and weights) help a domain recipe: one finetune per candidate mixture.

    python bench/family_ablation.py --recipe medical --base bundled:all-MiniLM-L6-v2

Every variant finetunes the same base model, with the recipe's seed, steps and loss, on one
mixture over the recipe's families, and is scored on all of the recipe's probes. Held-out
(probe-only) probes are scored on their *selection* halves only, as a search would: the test
halves stay unread for the final report (bench/domain_table.py). Prints a Markdown table: the
held-out and general means, and each held-out and general probe as a difference from the base
model, in points. (The trained domain families' own probes are left out, to save time: they say
how well a family is learnt, not whether it generalises.) One seed and one mixture per variant: a
screen that says which families to keep, not a verdict.

Then it chooses, from the selection halves alone, the variant with the best held-out mean among
those whose every general probe stays within 1 point of the base (else the smallest general loss),
prints the choice, and only then reads the held-out probes' *test* halves: each variant's
difference from the base with a 95% paired-bootstrap interval.
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
from soupkit.data.load import load_held_out_test_halves
from soupkit.probes.metrics import paired_bootstrap
from soupkit.probes.score import ProbeSettings, objective_value, per_item_scores, score_probes
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
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True, help="medical or legal (a recipe name or path)")
    parser.add_argument("--base", default=None, help="replace the recipe's base model")
    parser.add_argument("--variants", default=None, help="which variant set (default: the recipe's name)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these variants (by name)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FAMILY:W,FAMILY:W",
                        help="a variant of your own instead of the built-in set (repeatable)")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    updates = {"base": args.base} if args.base else {}
    if args.steps:
        updates["finetune"] = recipe.finetune.model_copy(update={"steps": args.steps})
    recipe = recipe.model_copy(update=updates)
    variants = VARIANTS.get(args.variants or recipe.name, {})
    if args.variant:
        variants = {}
        for spec in args.variant:
            name, _, weights = spec.partition("=")
            variants[name] = {f: float(w) for f, _, w in (item.partition(":") for item in weights.split(","))}
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only}

    start = time.perf_counter()
    families, probes = load_recipe_families(recipe)
    held_out = recipe.probe_names_only()
    probes = {n: f for n, f in probes.items() if n in held_out or n not in recipe.objective.domain}
    data_seconds = time.perf_counter() - start
    device = pick_device()
    bf16 = use_bf16(device, recipe.finetune.bf16)
    settings = ProbeSettings.from_recipe(recipe, bf16)
    model = load_model(recipe.base, device)
    base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base = score_probes(model, probes, settings)
    print_header(recipe, base, data_seconds)
    scratch = Path(tempfile.mkdtemp(prefix="soupkit-ablation-"))
    try:
        results = {}
        for i, (name, mixture) in enumerate(variants.items()):
            weights = seed_mixture_of(recipe).normalised() if mixture == "seed" else mixture
            missing = [f for f in weights if f not in families]
            if missing:
                raise SystemExit(f"variant '{name}': family '{missing[0]}' is not in the recipe's families")
            model.load_state_dict(base_state)
            t0 = time.perf_counter()
            finetune_on_mixture(model, families, weights, recipe.finetune, scratch / str(i), recipe.seed, bf16)
            results[name] = (scratch / str(i), score_probes(model, probes, settings))
            print_row(recipe, base, name, results[name][1], time.perf_counter() - t0)
        chosen = choose(recipe, base, {name: scores for name, (_, scores) in results.items()})
        print(f"\nchosen on the selection halves: {chosen}", flush=True)
        test_halves(recipe, base_state, model, results, settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def general_probes(recipe, base: dict) -> list[str]:
    """Every probe outside the domain, held-out ones (topic-classification) included."""
    return [p for p in base if "@" not in p and p not in recipe.objective.domain]


def means(recipe, base: dict, scores: dict) -> tuple[float, float]:
    """(held-out mean, general mean), weighted as the recipe's objective weighs them."""
    weights = recipe.objective.weights
    held = {p: scores[p] for p in recipe.probe_names_only() if p in recipe.objective.domain}
    general = {p: scores[p] for p in general_probes(recipe, base)}
    return objective_value(held, weights), objective_value(general, weights)


def choose(recipe, base: dict, scored: dict[str, dict]) -> str:
    def key(name):
        scores = scored[name]
        loss = sum(max(0.0, base[p] - 0.01 - scores[p]) for p in general_probes(recipe, base))
        return (-round(loss, 9), means(recipe, base, scores)[0])

    return max(scored, key=key)


def test_halves(recipe, base_state, model, results, settings) -> None:
    from soupkit.base_model import load_model as load

    halves = load_held_out_test_halves(recipe)
    model.load_state_dict(base_state)
    base_items = {n: per_item_scores(model, f, settings) for n, f in halves.items()}
    names = [n for n in halves if base_items[n] is not None]
    print("\nHeld-out probes, test halves (read only now): the base model's score, then each variant's "
          "difference from it, points, with a 95% paired-bootstrap interval\n")
    print("| model | " + " | ".join(f"{n}* test half ({len(base_items[n])} items)" for n in names) + " |")
    print("|" + "---|" * (len(names) + 1))
    print("| base model | " + " | ".join(f"{100 * base_items[n].mean():.1f}" for n in names) + " |")
    for name, (path, _) in results.items():
        variant = load(str(path), "cpu")
        cells = []
        for n in names:
            mean, low, high = paired_bootstrap(base_items[n], per_item_scores(variant, halves[n], settings))
            cells.append(f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def columns_of(recipe, base: dict) -> list[str]:
    held_out = recipe.probe_names_only()
    return held_out + [p for p in general_probes(recipe, base) if p not in held_out]


def print_header(recipe, base: dict, data_seconds: float) -> None:
    """The table's head and the base model's row; each variant's row follows as soon as it is scored."""
    held_out, columns = recipe.probe_names_only(), columns_of(recipe, base)
    base_held, base_general = means(recipe, base, base)
    print(f"recipe {recipe.name}, base {recipe.base}, {recipe.finetune.steps} steps, seed {recipe.seed}; "
          f"families built in {data_seconds:.0f}s; held-out probes (*) on their selection halves\n")
    print("| variant | held-out | general | " + " | ".join(f"{p}{'*' if p in held_out else ''}" for p in columns)
          + " | s |")
    print("|" + "---|" * (len(columns) + 4))
    print(f"| base model | {base_held:.4f} | {base_general:.4f} | "
          + " | ".join(f"{100 * base[p]:.1f}" for p in columns) + " | |", flush=True)


def print_row(recipe, base: dict, name: str, scores: dict, seconds: float) -> None:
    base_held, base_general = means(recipe, base, base)
    held, general_value = means(recipe, base, scores)
    cells = [f"{100 * (scores[p] - base[p]):+.1f}" for p in columns_of(recipe, base)]
    print(f"| {name} | {held:.4f} ({100 * (held - base_held):+.1f}) | "
          f"{general_value:.4f} ({100 * (general_value - base_general):+.1f}) | " + " | ".join(cells)
          + f" | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
