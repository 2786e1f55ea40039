"""The results table of a domain (pareto) search: base model vs best single trial vs its soups.

    python bench/domain_table.py --out runs/medical

Rows: the base model; the best single trial (the best domain score among trials whose general
score stays within 1 point of the base's, else the best domain score); every soup recorded in the
study and every soup of its ingredients (`soupkit ingredients`). Columns: domain and general
weighted means, then each probe (probe-only ones marked *);
these are the scores the search and the soups saw, so a held-out probe's column is its
*selection* half. A second table reads the held-out probes' *test* halves, which nothing before
this report scored: each model's difference from the base with a 95% paired-bootstrap interval
over the half's items (the models are re-encoded; the items are the same for all), so a gain can
be told from noise. Prints Markdown, ready for docs/recipes.md.

An `soupkit adapt` run folder works too: its rows are the base model (the bank's) and the adapt
soups with their roles. `--compare RUN` adds another run's soups of the same recipe (e.g. the
domain search whose shipped soup adapt should match), scored on the same halves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna

from soupkit.config import Recipe
from soupkit.probes.score import study_values
from soupkit.search.study import check_held_out_halves, default_storage, open_storage
from soupkit.errors import SoupkitError
from soupkit.soups.ingredient_study import find_ingredient_study
from soupkit.study_record import STAGE, StudyRecord, TrialRecord


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="another run folder of the same recipe whose soups to add (repeatable)")
    args = parser.parse_args()
    study = run_study(args.out)
    record = StudyRecord.of(study)
    recipe = record.recipe()
    check_held_out_halves(study, recipe)

    base_scores = record.base_scores
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    rows = model_rows(study, recipe, base_scores, done) + ingredient_soup_rows(args.out, study)
    for other in args.compare:
        other_study = run_study(other)
        if json.loads(StudyRecord.of(other_study).recipe_json or "{}") != json.loads(record.recipe_json):
            raise SystemExit(f"--compare {other}: another recipe than {args.out}'s")
        rows += [(f"{other.name}: {label}", scores, path)
                 for label, scores, path in soup_rows(other_study) + ingredient_soup_rows(other, other_study)]

    probes = [p for p in base_scores if "@" not in p]
    held_out = set(recipe.probe_names_only())
    header = ["model", "domain", "general"] + [f"{p}{'*' if p in held_out else ''}" for p in probes]
    print(f"study {study.study_name}: {len(done)} complete trials; * = probe-only family (never trained on),"
          " scored here on its selection half\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, scores, _ in rows:
        domain, general = study_values(scores, recipe.objective)
        cells = [label, f"{domain:.4f}", f"{general:.4f}"] + [f"{scores[p]:.3f}" for p in probes]
        print("| " + " | ".join(cells) + " |")
    held_out_intervals(recipe, rows)


def run_study(out: Path):
    """The run folder's own study (not a later stage's that shares its storage)."""
    storage = open_storage(default_storage(out))
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    own = [s for s in summaries if s.user_attrs.get(STAGE) in (None, "adapt")]  # a summary, not a study
    return optuna.load_study(study_name=own[0].study_name, storage=storage)


def model_rows(study, recipe: Recipe, base_scores: dict, done: list) -> list[tuple[str, dict, str]]:
    """(label, selection scores, model folder): the base, the best single trial (a search), the soups."""
    record = StudyRecord.of(study)
    if record.stage == "adapt":
        # the bank's base as merged; a bank whose base did not merge is compared with the recipe's
        base = next((m["path"] for m in record.bank if m["kind"] == "base"), recipe.base)
        return [("base model", base_scores, base), *soup_rows(study)]
    _, base_general = study_values(base_scores, recipe.objective)
    keeps_general = [t for t in done if t.values[1] >= base_general - 0.01]
    best = max(keeps_general or done, key=lambda t: t.values[0])
    return [("base model", base_scores, recipe.base),
            (f"best single trial (#{best.number})", TrialRecord.of(best).scores, str(TrialRecord.of(best).checkpoint)),
            *soup_rows(study)]


def ingredient_soup_rows(out: Path, study) -> list[tuple[str, dict, str]]:
    """The soups of the search's ingredients (`soupkit ingredients`, then `soup --from ingredients`), if any."""
    try:
        ingredients = find_ingredient_study(open_storage(default_storage(out)), study)
    except SoupkitError:  # no ingredients made
        return []
    return soup_rows(ingredients, members="ingredients")


def soup_rows(study, members: str = "trials") -> list[tuple[str, dict, str]]:
    """(label, selection scores, model folder) of every soup the study records; `members` names
    what its soups are made of."""
    rows = []
    for name, soup in StudyRecord.of(study).soups.items():
        if soup.weights:  # an adapt soup: its role and its largest shares
            top = sorted(soup.weights.items(), key=lambda x: -x[1])[:3]
            what = f"{soup.role}: " + ", ".join(f"{k} {v:.2f}" for k, v in top) + (", ..." if len(soup.weights) > 3 else "")
        else:
            share = f" + base at {soup.base_share:.2f}" if soup.base_share else ""
            what = f"{members} {soup.members}{share}"
        rows.append((f"soup {name} ({what})", soup.scores, soup.path))
    return rows


def held_out_intervals(recipe: Recipe, rows: list[tuple[str, dict, str]]) -> None:
    from soupkit.base_model import load_model, pick_device, use_bf16
    from soupkit.data.load import load_held_out_test_halves
    from soupkit.probes.metrics import paired_bootstrap
    from soupkit.probes.score import ProbeSettings, per_item_scores

    device = pick_device()
    settings = ProbeSettings.from_recipe(recipe, use_bf16(device, recipe.finetune.bf16))
    families = load_held_out_test_halves(recipe)
    items = {}
    for label, _, path in rows:
        model = load_model(path, device)
        items[label] = {name: per_item_scores(model, fam, settings) for name, fam in families.items()}
    base_label = rows[0][0]
    names = [n for n in families if items[base_label][n] is not None]
    print("\nHeld-out probes, test halves (read by nothing before this table): the base model's score,"
          " then each model's difference from it, points, with a 95% paired-bootstrap interval\n")
    print("| model | " + " | ".join(f"{n}* test half ({len(items[base_label][n])} items)" for n in names) + " |")
    print("|" + "---|" * (len(names) + 1))
    print(f"| {base_label} | " + " | ".join(f"{100 * items[base_label][n].mean():.1f}" for n in names) + " |")
    for label, _, _ in rows[1:]:
        cells = []
        for n in names:
            mean, low, high = paired_bootstrap(items[base_label][n], items[label][n])
            cells.append(f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
