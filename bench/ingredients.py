"""Soups of ingredients against their ingredients and the base, with the ablations that explain them.

    python bench/ingredients.py --recipe medical --base bundled --out runs/ingredients-medical \\
        --budget 8 --k 4 --steps 240 --ablations proxy,k2,top2

One command, resumable (each stage resumes what an earlier run left): a search of `--budget`
short trials; `--k` diverse ingredients of `--steps` steps (`soupkit ingredients`); their uniform
and greedy soups; then the ablations asked for:

- `proxy`: the uniform soup of the same K mixtures' search trials (the short proxies) instead of
  the longer ingredients; `proxy-top`: the uniform soup of the best K search trials (what
  `soupkit soup --top-k K` makes), for top-K against diverse-K without training;
- `kN` (e.g. `k2`, `k8`): the diverse choice with N ingredients (the same pool, so a smaller N
  reuses a prefix of the larger choice and trains nothing new);
- `topN` (e.g. `top2`, `top4`): the best N trials' mixtures instead of the diverse N.

Prints Markdown: every model's domain / general / objective and per-probe scores (the scores the
choices saw: held-out probes on their selection halves); the goals' checks, with 95%
paired-bootstrap intervals: each soup against its best ingredient on every probe scored item by
item, and on the held-out probes' *test* halves (read by nothing else) against the base model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from soupkit.config import load_recipe
from soupkit.probes.score import objective_value, study_values
from soupkit.search.run import run_search
from soupkit.search.study import default_storage, open_storage
from soupkit.soups.compare import differences, item_scores
from soupkit.soups.ingredients import choose_ingredients, ingredient_soup_source, make_ingredients
from soupkit.soups.study_soup import SoupSource, build_soup, ranked_ingredients, study_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="medical")
    parser.add_argument("--base", default="bundled")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--pool", type=int, default=None, help="default 2k; every ablation uses the same pool")
    parser.add_argument("--ablations", default="proxy", help="comma-separated: proxy, kN, topN")
    args = parser.parse_args()
    quiet = {"log": lambda s: print(f"  {s}", flush=True), "show_progress": False}
    clock = time.perf_counter()

    recipe = load_recipe(args.recipe)
    recipe = recipe.model_copy(update={"base": args.base, "search": recipe.search.model_copy(update={"budget": args.budget})})
    run_search(recipe, args.out, log=quiet["log"], show_progress=False)
    print(f"search: {time.perf_counter() - clock:.0f}s", flush=True)
    storage = open_storage(default_storage(args.out))
    import optuna

    study = optuna.load_study(study_name=recipe.name, storage=storage)
    recipe = study_recipe(study)
    pool = args.pool or 2 * args.k
    spec = recipe.ingredients.model_copy(update={"k": args.k, "steps": args.steps, "pool": pool})

    rows = {}  # label -> (scores, model path)
    base_scores = study.user_attrs["base_scores"]
    rows["base model"] = (base_scores, recipe.base)
    best_trial = ranked_ingredients(study)[0]

    def soups_of(set_name: str, methods=("uniform", "greedy")) -> list[str]:
        made = []
        for method in methods:
            source = ingredient_soup_source(storage, study, set_name)
            result = build_soup(study, args.out, method=method, top_k=len(source.candidates),
                                name=f"{method}-{set_name}", log=quiet["log"], source=source)
            label = f"soup {method} of {set_name} (ingredients {result.members})"
            rows[label] = (result.scores, str(result.path))
            made.append(label)
        return made

    main_set = make_ingredients(storage, study, args.out, spec, **quiet)
    print(f"ingredients: {time.perf_counter() - clock:.0f}s", flush=True)
    by_number = {t.number: t for t in main_set.study.get_trials()}
    best_ingredient = max(main_set.chosen.ingredients, key=lambda n: by_number[n].user_attrs["objective"])
    for number, source in zip(main_set.chosen.ingredients, main_set.chosen.sources):
        attrs = by_number[number].user_attrs
        rows[f"ingredient {number} (mixture of trial {source})"] = (attrs["scores"], attrs["checkpoint"])
    main_soups = soups_of(main_set.chosen.name)
    print(f"soups: {time.perf_counter() - clock:.0f}s", flush=True)

    for ablation in filter(None, args.ablations.split(",")):
        if ablation in ("proxy", "proxy-top"):
            # the short search trials themselves: the same K diverse mixtures, or the best K trials
            trials = {i.trial: i for i in ranked_ingredients(study)}
            if ablation == "proxy":
                members, what = [trials[s] for s in main_set.chosen.sources if s in trials], "the same mixtures'"
            else:
                top = choose_ingredients(study, recipe, spec.model_copy(update={"select": "top"}), recipe.base, "top")
                members, what = [trials[s] for s in top.sources if s in trials], f"the best {args.k}"
            source = SoupSource(study, recipe, members, base_scores, tag=ablation)
            result = build_soup(study, args.out, method="uniform", top_k=len(members),
                                name=f"uniform-{ablation}-{args.k}", log=quiet["log"], source=source)
            rows[f"soup uniform of {what} {recipe.finetune.steps}-step trials {result.members}"] = (
                result.scores, str(result.path))
            rows.setdefault(f"best search trial (#{best_trial.trial}, {recipe.finetune.steps} steps)",
                            (best_trial.scores, str(best_trial.checkpoint)))
        elif ablation.startswith(("k", "top")):
            select = "top" if ablation.startswith("top") else "diverse"
            k = int(ablation[len("top"):] if select == "top" else ablation[len("k"):])
            other = make_ingredients(storage, study, args.out, spec.model_copy(update={"k": k, "select": select}),
                                     **quiet)
            trained = {t.number: t for t in other.study.get_trials()}
            for number, source in zip(other.chosen.ingredients, other.chosen.sources):
                attrs = trained[number].user_attrs
                rows.setdefault(f"ingredient {number} (mixture of trial {source})", (attrs["scores"], attrs["checkpoint"]))
            soups_of(other.chosen.name, ("uniform",))
        else:
            parser.error(f"unknown ablation '{ablation}'")
        print(f"ablation {ablation}: {time.perf_counter() - clock:.0f}s", flush=True)

    print_scores(recipe, rows)
    best_label = next(lbl for lbl in rows if lbl.startswith(f"ingredient {best_ingredient} "))
    print_checks(recipe, rows, main_soups, best_label)
    print(f"\ntotal {time.perf_counter() - clock:.0f}s")


def print_scores(recipe, rows: dict) -> None:
    probes = [p for p in rows["base model"][0] if "@" not in p]
    held_out = set(recipe.probe_names_only())
    pareto = recipe.objective.mode == "pareto"
    header = ["model"] + (["domain", "general"] if pareto else []) + ["objective"] + [
        f"{p}{'*' if p in held_out else ''}" for p in probes]
    print("\nScores the choices saw (* = held-out probe, its selection half)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, (scores, _) in rows.items():
        values = [f"{v:.4f}" for v in study_values(scores, recipe.objective)] if pareto else []
        cells = [label, *values, f"{objective_value(scores, recipe.objective.weights):.4f}"]
        print("| " + " | ".join(cells + [f"{scores[p]:.3f}" for p in probes]) + " |")


def print_checks(recipe, rows: dict, soups: list[str], best_ingredient: str) -> None:
    from soupkit.data.load import load_held_out_test_halves, load_recipe_families

    # goal 1: each soup against its best ingredient, on every probe scored item by item
    _, probes = load_recipe_families(recipe)
    models = {label: rows[label][1] for label in [*soups, best_ingredient]}
    items = item_scores(models, probes, recipe)
    best_value = objective_value(rows[best_ingredient][0], recipe.objective.weights)
    print(f"\nEach soup against the best ingredient ({best_ingredient}, objective {best_value:.4f}), points, "
          "95% paired-bootstrap interval (selection probes)\n")
    for soup in soups:
        found = differences(items, soup, [best_ingredient], seed=recipe.seed)
        value = objective_value(rows[soup][0], recipe.objective.weights)
        below = [d.probe for d in found if d.below]
        print(f"- {soup}: objective {value:.4f} ({100 * (value - best_value):+.2f} points); "
              + ", ".join(f"{d.probe} {d.cell()}" for d in found)
              + f"; below beyond the noise on: {', '.join(below) or 'none'}")
    # goal 2: held-out test halves, every model against the base
    if not recipe.probe_only:
        return
    tests = load_held_out_test_halves(recipe)
    models = {label: path for label, (_, path) in rows.items()}
    items = item_scores(models, tests, recipe)
    names = [n for n in tests if items["base model"][n] is not None]
    print("\nHeld-out probes, test halves (read by nothing but this table): base score, then each model's "
          "difference from the base, points, 95% paired-bootstrap interval\n")
    print("| model | " + " | ".join(f"{n}* test half ({len(items['base model'][n])} items)" for n in names) + " |")
    print("|" + "---|" * (len(names) + 1))
    print("| base model | " + " | ".join(f"{100 * items['base model'][n].mean():.1f}" for n in names) + " |")
    for label in rows:
        if label == "base model":
            continue
        found = {d.probe: d for d in differences(items, label, ["base model"], seed=recipe.seed)}
        print(f"| {label} | " + " | ".join(found[n].cell() for n in names) + " |")


if __name__ == "__main__":
    main()
