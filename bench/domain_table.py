"""The results table of a domain (pareto) search: base model vs best single trial vs its soups.

    python bench/domain_table.py --out runs/medical

Rows: the base model; the best single trial (the best domain score among trials whose general
score stays within 1 point of the base's, else the best domain score); every soup recorded in the
study and every soup of its ingredients (`soupkit ingredients`). For a search by merging, whose
trials are merges scored in memory and not models, each trained ingredient takes the best trial's
place. Columns: domain and general weighted means, then each probe (probe-only ones marked *);
these are the scores the search and the soups saw: each probe's *selection* half (a trained
family's whole probe in a study made before trained families were halved). A second table reads
every probe's *test* half, which nothing before this report scored, through `soupkit eval`'s
verdict: each model's difference from the base with a 95% paired-bootstrap interval over the
half's items, so a gain can be told from noise. Prints Markdown, ready for docs/recipes.md.

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
from soupkit.study_record import STAGE, StudyRecord, TrialRecord, merge_proxy_of


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
    rows = model_rows(args.out, study, recipe, base_scores, done) + ingredient_soup_rows(args.out, study)
    for other in args.compare:
        other_study = run_study(other)
        if json.loads(StudyRecord.of(other_study).recipe_json or "{}") != json.loads(record.recipe_json):
            raise SystemExit(f"--compare {other}: another recipe than {args.out}'s")
        rows += [(f"{other.name}: {label}", scores, path)
                 for label, scores, path in soup_rows(other_study) + ingredient_soup_rows(other, other_study)]

    probes = [p for p in base_scores if "@" not in p]
    held_out = set(recipe.probe_names_only())
    header = ["model", "domain", "general"] + [f"{p}{'*' if p in held_out else ''}" for p in probes]
    print(f"study {study.study_name}: {len(done)} complete trials; * = probe-only family (never trained on);"
          " scores of the study, on selection halves\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, scores, _ in rows:
        domain, general = study_values(scores, recipe.objective)
        cells = [label, f"{domain:.4f}", f"{general:.4f}"] + [f"{scores[p]:.3f}" for p in probes]
        print("| " + " | ".join(cells) + " |")
    test_half_table(recipe, rows)


def run_study(out: Path):
    """The run folder's own study (not a later stage's that shares its storage)."""
    storage = open_storage(default_storage(out))
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    own = [s for s in summaries if s.user_attrs.get(STAGE) in (None, "adapt")]  # a summary, not a study
    return optuna.load_study(study_name=own[0].study_name, storage=storage)


def model_rows(out: Path, study, recipe: Recipe, base_scores: dict, done: list) -> list[tuple[str, dict, str]]:
    """(label, selection scores, model folder): the base, the best single trial (a search; a search by
    merging's trials are no models, so its trained ingredients instead), the soups."""
    record = StudyRecord.of(study)
    if record.stage == "adapt":
        # the bank's base as merged; a bank whose base did not merge is compared with the recipe's
        base = next((m["path"] for m in record.bank if m["kind"] == "base"), recipe.base)
        return [("base model", base_scores, base), *soup_rows(study)]
    if merge_proxy_of(study):
        return [("base model", base_scores, recipe.base), *ingredient_rows(out, study)]
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


def ingredient_rows(out: Path, study) -> list[tuple[str, dict, str]]:
    """Each trained ingredient of a search by merging: the mixtures its proxies chose, finetuned."""
    try:
        ingredients = find_ingredient_study(open_storage(default_storage(out)), study)
    except SoupkitError:
        return []
    records = [TrialRecord.of(t) for t in ingredients.trials if t.state.name == "COMPLETE"]
    return [(f"ingredient #{r.number} (trained; mixture chosen by merging)", r.scores, str(r.checkpoint))
            for r in records if r.checkpoint]


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


def test_half_table(recipe: Recipe, rows: list[tuple[str, dict, str]]) -> None:
    """Every probe's test half, which nothing before this table scored: the verdict of `soupkit
    eval` (soupkit.soups.verdict) of each model against the first row's."""
    from soupkit.soups.verdict import evaluate_models

    base_label, _, base_path = rows[0]
    labels = {str(path): label for label, _, path in rows[1:]}
    verdict = evaluate_models(list(labels), recipe, base=str(base_path), split="test")
    intro = ("Test halves of every probe (read by nothing before this table; `soupkit eval --split test`): the base"
             " model's score, then each model's difference from it, points, with a 95% paired-bootstrap interval"
             " (* beyond the noise)")
    print_verdict_rows([(labels[r.model], r) for r in verdict.records], base_label, set(recipe.probe_names_only()), intro)


def print_verdict_rows(records: list, base_label: str, held_out: set[str], intro: str,
                       mark_held_out_losses: bool = False) -> None:
    """A Markdown table of (label, VerdictRecord) pairs: one column per probe (held-out ones marked
    *), the base's score, then each label's difference; `mark_held_out_losses` adds ! to a held-out
    probe's difference below -0.5 point (the no-forgetting goal's line)."""
    probes = list(dict.fromkeys(r.probe for _, r in records))
    first = {p: next(r for _, r in records if r.probe == p) for p in probes}
    print(f"\n{intro}\n")
    print("| model | " + " | ".join(f"{p}{'*' if p in held_out else ''} ({first[p].items or 'set'})" for p in probes) + " |")
    print("|" + "---|" * (len(probes) + 1))
    print(f"| {base_label} | " + " | ".join(f"{100 * first[p].base_score:.1f}" for p in probes) + " |")
    by = {(label, r.probe): r for label, r in records}
    for label in dict.fromkeys(label for label, _ in records):
        cells = [by[(label, p)].difference_cell()
                 + (" !" if mark_held_out_losses and p in held_out and by[(label, p)].difference < -0.005 else "")
                 for p in probes]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
