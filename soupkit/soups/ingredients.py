"""`soupkit ingredients`: finetune K good and different mixtures of a search properly, to soup them.

A search's trials are short proxies (tens of steps) that barely leave the base model, and the
best of them sit close together; their soups gain little. Here K mixtures are chosen from the
study's best trials (or its Pareto front) by greedy max-min distance on the simplex
(soupkit.soups.selection), each is finetuned from one base model with the recipe's longer
`ingredients:` budget, scored on the probes, and recorded in the ingredient study
(soupkit.soups.ingredient_study). The base may be another model than the search's: a search on a
small proxy model can choose the mixtures for a larger one.

Resumable and crash-safe as trials are (the same lifecycle, soupkit.search.lifecycle): the choice
is recorded before anything trains, so a re-run trains the same mixtures; one already trained (for
this set or any other) is reused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from soupkit.config import FinetuneSpec, IngredientSpec, Mixture, Recipe
from soupkit.errors import SoupkitError
from soupkit.soups.ingredient_study import (
    IngredientSet,
    ingredient_key,
    load_set,
    open_ingredient_study,
    record_set,
)
from soupkit.soups.selection import (
    Candidate,
    choose_diverse,
    choose_top,
    distance_matrix,
)
from soupkit.study_record import (
    StudyRecord,
    TrialRecord,
    ingredient_sets,
    record_ingredient,
    record_scores_by_base,
    scores_by_base,
)

__all__ = ["IngredientsResult", "choose_ingredients", "default_set_name", "ingredient_soup_source", "make_ingredients"]

FOLDER = "ingredients"


@dataclass
class IngredientsResult:
    study: object  # the ingredient study
    chosen: IngredientSet
    reused: list[int]  # ingredient trials that were already trained
    base_scores: dict[str, float]
    base_objective: float


def default_set_name(spec: IngredientSpec, base: str, search_base: str, from_front: bool) -> str:
    name = f"{spec.select}{spec.k}-{spec.steps}steps" + ("-front" if from_front else "")
    if base != search_base:
        name += "-" + _slug(base)
    return name


def ranked_pool(search_study, recipe: Recipe, from_front: bool, tolerance: float | None) -> list[Candidate]:
    """Completed trials best first, one per distinct mixture. Ranked as the greedy soup ranks them:
    by the objective, or for a pareto recipe by the domain score once every general probe is within
    `tolerance` of the base. With `from_front`, only the Pareto front."""
    from soupkit.soups.study_soup import GreedyCriterion

    criterion = GreedyCriterion(recipe.objective, StudyRecord.of(search_study).base_scores, tolerance)
    trials = search_study.best_trials if from_front else search_study.get_trials(deepcopy=False)
    records = [TrialRecord.of(t) for t in trials]
    done = [t for t in records if t.state == "COMPLETE" and t.mixture and t.scores]
    done.sort(key=lambda t: (criterion.key(t.scores), -t.number), reverse=True)
    pool, seen = [], set()
    for t in done:
        weights = Mixture(weights=t.mixture).normalised()
        key = tuple(sorted((k, round(v, 6)) for k, v in weights.items()))
        if key not in seen:
            seen.add(key)
            pool.append(Candidate(t.number, weights))
    return pool


def choose_ingredients(search_study, recipe: Recipe, spec: IngredientSpec, base: str, name: str,
                       from_front: bool = False, tolerance: float | None = 0.01) -> IngredientSet:
    """The K mixtures to train, from the best `spec.pool` (default 2K) distinct trials."""
    pool_size = spec.pool or 2 * spec.k
    ranked = ranked_pool(search_study, recipe, from_front, tolerance)
    if len(ranked) < spec.k:
        where = "on the Pareto front" if from_front else "completed"
        raise SoupkitError(f"--k {spec.k} needs {spec.k} distinct mixtures, but study '{search_study.study_name}' "
                           f"has {len(ranked)} {where}; search longer or ask for fewer")
    pool = ranked[:max(pool_size, spec.k)]
    chosen = choose_diverse(pool, spec.k) if spec.select == "diverse" else choose_top(pool, spec.k)
    mixtures = [{k: round(v, 6) for k, v in c.mixture.items()} for c in chosen]
    return IngredientSet(
        name=name, select=spec.select, k=spec.k, pool=len(pool), from_front=from_front, base=base,
        finetune=spec.finetune_spec(recipe.finetune).model_dump(mode="json"), sources=[c.trial for c in chosen],
        mixtures=mixtures, distances=[[round(d, 4) for d in row] for row in distance_matrix(mixtures)],
        ingredients=[None] * len(chosen),
    )


def finetune_settings(spec: IngredientSpec, recipe: Recipe) -> FinetuneSpec:
    """The ingredients' finetune settings (the recipe's, with the `ingredients:` section laid over
    them), checked by FinetuneSpec's bounds: a value out of range is one line naming the option."""
    from pydantic import ValidationError

    from soupkit.config import validation_problem

    try:
        return spec.finetune_spec(recipe.finetune)
    except ValidationError as exc:
        loc, msg, err = validation_problem(exc)
        option = "--" + loc.split(".")[0].replace("_", "-") if loc else "ingredients"
        raise SoupkitError(f"{option}: {msg}, got {err.get('input')}") from None


def make_ingredients(
    storage,
    search_study,
    run_dir: Path,
    spec: IngredientSpec,
    base: str | None = None,
    name: str | None = None,
    from_front: bool = False,
    tolerance: float | None = 0.01,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    command: str = "",
    trust_remote_code: bool = False,
) -> IngredientsResult:
    """Choose the set (or resume the one recorded under `name`), train what is missing, record it."""
    from soupkit.base_model import load_model, pick_device, resolve_base, use_bf16
    from soupkit.data.load import load_recipe_families
    from soupkit.probes.score import ProbeSettings, objective_value
    from soupkit.search.checkpoints import claim_checkpoint_folder
    from soupkit.search.lifecycle import (
        TrainedStage,
        base_scores,
        load_context,
        progress_bar,
        recover,
        trained_with_key,
    )
    from soupkit.search.study import check_held_out_halves
    from soupkit.soups.study_soup import study_recipe
    from soupkit.train.finetune import check_train_setting

    recipe = study_recipe(search_study)
    scheme = check_held_out_halves(search_study, recipe)  # ingredients are scored, and chosen, as its trials were
    base = base or recipe.base
    # a missing folder, or a top:<k> it has too few layers for, fails here, before anything is recorded
    check_train_setting(spec.finetune_spec(recipe.finetune), resolve_base(base))
    name = name or default_set_name(spec, base, recipe.base, from_front)
    finetune_settings(spec, recipe)
    wanted = choose_ingredients(search_study, recipe, spec, base, name, from_front, tolerance)
    study = open_ingredient_study(storage, search_study)  # after every check: a mistake leaves no study
    recorded = ingredient_sets(study).get(name)
    if recorded is None:
        record_set(study, wanted)
        chosen = wanted
    else:
        chosen = load_set(study, name)
        differs = next((k for k, v in wanted.settings().items() if chosen.settings()[k] != v), None)
        if differs:
            raise SoupkitError(f"ingredient set '{name}' was made with another {differs} "
                               f"({chosen.settings()[differs]!r}); give these settings another --name")
        log(f"resuming ingredient set '{name}' (mixtures as chosen before)")
    log(describe_set(chosen))

    device = pick_device()
    finetune = recipe.finetune.model_validate(chosen.finetune)
    # a dead ingredient is failed, not queued again: each run enqueues the mixtures it still needs
    # the ingredients folder is this study's (its partial folders may go; nothing else is touched)
    claim_checkpoint_folder(run_dir / FOLDER, study, str((run_dir / "study.db").resolve()))
    recover(study, storage, run_dir / FOLDER, "ingredient", requeue=False)
    ctx = None
    reused = []
    for i, (source, mixture) in enumerate(zip(chosen.sources, chosen.mixtures)):
        key = ingredient_key(mixture, base, chosen.finetune, recipe.seed)
        done = trained_with_key(study, key, run_dir)
        if done is not None:
            chosen.ingredients[i] = done.number
            reused.append(done.number)
            log(f"ingredient {i + 1}/{chosen.k} (mixture of trial {source}): already trained as #{done.number}")
            continue
        if ctx is None:
            ctx = load_context(recipe, run_dir, command, TrainedStage("ingredient", finetune, True), base,
                               trust_remote_code=trust_remote_code, log=log, checkpoints=run_dir / FOLDER,
                               scheme=scheme)
        with progress_bar(show_progress, finetune.steps, f"ingredient {i + 1}/{chosen.k}") as ctx.on_step:
            trial = train_ingredient(study, ctx, source, mixture, key, base, chosen.name)
        chosen.ingredients[i] = trial.number
        record_set(study, chosen)
        done = TrialRecord.of(trial)
        secs = done.seconds
        log(f"ingredient {i + 1}/{chosen.k} (#{trial.number}, mixture of trial {source}) objective "
            f"{done.objective:.4f}  finetune {secs['finetune']:.0f}s probe {secs['probe']:.0f}s")
    record_set(study, chosen)
    bases = scores_by_base(study)
    if base not in bases:  # the ingredients' base model: the search's, or scored once and recorded
        searched = StudyRecord.of(search_study).base_scores if base == recipe.base else None
        probes = None if searched else (ctx.probes if ctx is not None else load_recipe_families(recipe, scheme=scheme)[1])
        model = lambda: load_model(base, device, trust_remote_code=trust_remote_code)  # noqa: E731
        settings = ProbeSettings.from_recipe(recipe, use_bf16(device, recipe.finetune.bf16))
        bases[base] = base_scores(searched, probes, model, settings)
        record_scores_by_base(study, base, bases[base])
    return IngredientsResult(study, chosen, reused, bases[base], objective_value(bases[base], recipe.objective.weights))


def train_ingredient(study, ctx, source: int, mixture: dict, key: str, base: str, set_name: str):
    """One ingredient as a trial of the ingredient study, through the trained-candidate lifecycle:
    RUNNING while it trains, then COMPLETE, or FAIL with its error (and a later run trains it again)."""
    from soupkit.search.lifecycle import (
        ask_mixture,
        failure_as_one_line,
        run_and_tell,
        train_and_score,
    )

    trial, weights = ask_mixture(study, list(ctx.families), mixture)

    def body(trial) -> list[float]:
        record_ingredient(trial, key, source, base, ctx.finetune.model_dump(mode="json"), set_name)
        return train_and_score(trial, ctx, weights, {"source_trial": source, "base": base})

    with failure_as_one_line(f"ingredient #{trial.number} (mixture of trial {source})"):
        return run_and_tell(study, trial, ctx, body)


def ingredients_table(result: IngredientsResult) -> str:
    """Per-probe scores of each ingredient of the set (with the search trial it came from) and the base."""
    import polars as pl

    from soupkit.report.tables import terminal_table

    by_number = {t.number: t for t in result.study.get_trials(deepcopy=False)}
    rows = []
    for number, source in zip(result.chosen.ingredients, result.chosen.sources):
        done = TrialRecord.of(by_number[number])
        rows.append({"model": f"ingredient {number} (trial {source})", "objective": done.objective, **done.scores})
    rows.append({"model": "base", "objective": result.base_objective, **result.base_scores})
    with terminal_table(len(rows), types=True):
        return str(pl.DataFrame(rows))


def describe_set(chosen: IngredientSet) -> str:
    """The chosen mixtures (one row each) and their pairwise distances."""
    families = list(chosen.mixtures[0])
    width = max(8, *(len(f) for f in families))
    lines = [f"ingredient set '{chosen.name}': {chosen.k} mixtures ({chosen.select} choice among the best "
             f"{chosen.pool}{' of the Pareto front' if chosen.from_front else ''}), {chosen.finetune['steps']} steps "
             f"from {chosen.base}",
             f"{'family':{width}s}  " + "  ".join(f"trial {s:>4d}" for s in chosen.sources)]
    for f in families:
        lines.append(f"{f:{width}s}  " + "  ".join(f"{m.get(f, 0.0):10.3f}" for m in chosen.mixtures))
    lines.append("pairwise distance (total variation, 0 = same mixture, 1 = no family in common)")
    for s, row in zip(chosen.sources, chosen.distances):
        lines.append(f"{'trial ' + str(s):{width}s}  " + "  ".join(f"{d:10.3f}" for d in row))
    return "\n".join(lines)


def ingredient_soup_source(storage, search_study, set_name: str | None = None, run: Path | None = None):
    """The trained ingredients of a set (the last one recorded by default) as soup candidates, best
    objective first, with their own base model; their soups are recorded in the ingredient study."""
    from soupkit.soups.ingredient_study import find_ingredient_study
    from soupkit.soups.study_soup import Ingredient, SoupSource, study_recipe

    study = find_ingredient_study(storage, search_study)
    chosen = load_set(study, set_name)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    candidates = []
    for number in chosen.ingredients:
        done = TrialRecord.of(by_number[number]) if number in by_number else None
        if done is not None and done.has_model(run):
            candidates.append(Ingredient(number, done.checkpoint_in(run), float(done.objective), done.scores))
    missing = chosen.k - len(candidates)
    if missing:
        raise SoupkitError(f"ingredient set '{chosen.name}' has {missing} of {chosen.k} ingredients not trained "
                           "(or their folders are gone); run `soupkit ingredients` again to finish it")
    recipe = study_recipe(search_study)
    recipe = recipe.model_copy(update={"base": chosen.base})
    base_scores = scores_by_base(study).get(chosen.base) or {}
    folder = "base-model" if chosen.base == study_recipe(search_study).base else f"base-model-{_slug(chosen.base)}"
    candidates.sort(key=lambda c: (-c.objective, c.trial))
    return SoupSource(study, recipe, candidates, base_scores, label="ingredient", base_folder=folder,
                      tag=f"{chosen.name}-top")


def _slug(base: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(base).name or base).strip("-") or "base"
