"""`soupkit experts`: one finetune per family of a recipe, the bank a search by merging merges.

Each trained family gets one expert: a finetune on that family, mixed with the recipe's general
families at `--general-share` of the batches (0: the family alone). Which families are general:
for a pareto recipe, the trained families that are not `objective.domain` probes (what the model
must keep); for a weighted recipe (the default) every family, since every probe counts alike, so
an expert's general share is spread uniformly over the other families. Every trained family has
an expert, so a mixture's weights are the merge weights of the experts, coordinate for coordinate,
and a search by merging searches the very space a trained search does (soupkit.search.merge_proxy).

The experts are trials of the expert study beside the search's (`<search study>.experts`), run
through the trained-candidate lifecycle (soupkit.search.lifecycle) as the stage "expert"; each
call records its bank (share, finetune settings, base) under a name, so banks of several shares or
lengths live side by side, and an expert with the same mixture, base, settings and seed is reused.
Resumable and crash-safe as ingredients are: a re-run trains only what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from soupkit.config import FinetuneSpec, Recipe
from soupkit.errors import SoupkitError
from soupkit.search.merge_proxy import STAGE, expert_study_name
from soupkit.study_record import (
    StudyRecord,
    TrialRecord,
    beside_of,
    expert_banks,
    record_beside,
    record_expert,
    record_expert_bank,
    record_recipe,
)

__all__ = ["ExpertsResult", "expert_mixtures", "general_families", "make_experts"]

FOLDER = "experts"
KIND = "expert"


@dataclass
class ExpertsResult:
    study: object  # the expert study
    name: str  # the bank's name
    experts: dict[str, int]  # family -> expert trial
    reused: list[int]
    mixtures: dict[str, dict[str, float]]


def general_families(recipe: Recipe) -> list[str]:
    """The trained families that count as general: not a domain probe of a pareto recipe; every
    family of a weighted one (every probe weighs alike there)."""
    names = recipe.family_names()
    if recipe.objective.two_objectives:
        domain = set(recipe.objective.domain)
        return [f for f in names if f not in domain]
    return names


def expert_mixtures(recipe: Recipe, share: float) -> dict[str, dict[str, float]]:
    """family -> the mixture its expert trains on: the family at 1 - share, the share spread
    uniformly over the general families other than itself (the family alone when there are none)."""
    import math

    names = recipe.family_names()
    if len(names) < 2:
        raise SoupkitError(f"recipe '{recipe.name}' trains on {len(names)} family; experts need at least two "
                           "(one expert per family, merged with a mixture's weights)")
    if not (math.isfinite(share) and 0 <= share < 1):
        raise SoupkitError(f"--general-share must be in [0, 1) (0: each family alone), got {share}")
    general = general_families(recipe)
    mixtures = {}
    for family in names:
        others = [g for g in general if g != family]
        if share == 0 or not others:
            mixtures[family] = {family: 1.0}
        else:
            mixtures[family] = {family: round(1 - share, 6), **{g: round(share / len(others), 6) for g in others}}
    # an expert must lean to its own family: with two general families at share 0.5 both would be
    # the same model, and no merge could tell one mixture from another
    for family, mixture in mixtures.items():
        if any(w >= mixture[family] for f, w in mixture.items() if f != family):
            raise SoupkitError(f"--general-share {share:g} gives the expert of {family} as much of another family "
                               "as of its own; use a smaller share")
    return mixtures


def default_bank_name(share: float, finetune: FinetuneSpec) -> str:
    return f"share{share:g}-{finetune.steps}steps" + ("" if finetune.train == "all" else f"-{finetune.train}")


def make_experts(
    recipe: Recipe,
    out: Path,
    share: float = 0.5,
    steps: int | None = None,
    train: str | None = None,
    name: str | None = None,
    recipe_path: Path | None = None,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    command: str = "",
    trust_remote_code: bool = False,
) -> ExpertsResult:
    """Record the bank (or resume the one recorded under `name`), train its missing experts."""
    from soupkit.base_model import resolve_base
    from soupkit.data.load import check_recipe
    from soupkit.search.checkpoints import claim_checkpoint_folder
    from soupkit.search.lifecycle import (
        load_context,
        progress_bar,
        recover,
        trained_with_key,
    )
    from soupkit.search.run import (
        check_run_folder,
        directions,
        effective_recipe_json,
        write_run_recipe,
    )
    from soupkit.search.study import (
        check_held_out_halves,
        close_storage,
        default_storage,
        open_storage,
    )
    from soupkit.soups.ingredient_study import ingredient_key
    from soupkit.train.finetune import check_train_setting

    out = Path(out)
    mixtures = expert_mixtures(recipe, share)
    update = {k: v for k, v in {"steps": steps, "train": train}.items() if v is not None}
    finetune = FinetuneSpec.model_validate({**recipe.finetune.model_dump(), **update})
    check_recipe(recipe, recipe_path)
    check_run_folder(out, recipe)
    check_train_setting(finetune, resolve_base(recipe.base))
    name = name or default_bank_name(share, finetune)
    settings = {"general_share": share, "base": recipe.base, "finetune": finetune.model_dump(mode="json"),
                "seed": recipe.seed, "mixtures": mixtures}

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    store = open_storage(default_storage(out), create=True)
    try:
        study = optuna.create_study(storage=store, study_name=expert_study_name(recipe.name),
                                    directions=directions(recipe), load_if_exists=True,
                                    sampler=optuna.samplers.RandomSampler(seed=0))  # every mixture is fixed
        recorded = expert_banks(study).get(name)
        if recorded is not None and recorded["settings"] != settings:
            differs = next(k for k in settings if recorded["settings"].get(k) != settings[k])
            raise SoupkitError(f"expert bank '{name}' in {out} was made with another {differs}; give these "
                               "settings another --name")
        if beside_of(study) is None:
            record_beside(study, STAGE, recipe.name)
            record_recipe(study, effective_recipe_json(recipe))
        scheme = check_held_out_halves(study, recipe, record=True)  # experts are scored as trials are
        write_run_recipe(out, recipe)
        experts = dict((recorded or {}).get("experts") or dict.fromkeys(mixtures))
        record_expert_bank(study, name, {"settings": settings, "experts": experts})
        if recorded is not None:
            log(f"resuming expert bank '{name}'")
        # a dead expert is failed, not queued again: each run enqueues the mixtures it still needs
        claim_checkpoint_folder(out / FOLDER, study, str((out / "study.db").resolve()))
        recover(study, store, out / FOLDER, KIND, requeue=False)
        ctx, reused = None, []
        for i, (family, mixture) in enumerate(mixtures.items()):
            key = ingredient_key(mixture, recipe.base, settings["finetune"], recipe.seed)
            done = trained_with_key(study, key, out)
            if done is not None:
                experts[family] = done.number
                reused.append(done.number)
                log(f"expert {i + 1}/{len(mixtures)} ({family}): already trained as #{done.number}")
                continue
            if ctx is None:
                from soupkit.search.lifecycle import TrainedStage

                ctx = load_context(recipe, out, command, TrainedStage(KIND, finetune, True),
                                   recipe_dir=recipe_path.parent if recipe_path else None,
                                   trust_remote_code=trust_remote_code, log=log, checkpoints=out / FOLDER,
                                   scheme=scheme)
            with progress_bar(show_progress, finetune.steps, f"expert {i + 1}/{len(mixtures)}") as ctx.on_step:
                trial = _train_expert(study, ctx, family, mixture, key, share, name)
            experts[family] = trial.number
            record_expert_bank(study, name, {"settings": settings, "experts": experts})
            done = TrialRecord.of(trial)
            log(f"expert {i + 1}/{len(mixtures)} ({family}, #{trial.number}) objective {done.objective:.4f}  "
                f"finetune {done.seconds['finetune']:.0f}s probe {done.seconds['probe']:.0f}s")
        record_expert_bank(study, name, {"settings": settings, "experts": experts})
        if not StudyRecord.of(study).base_scores:  # the base's, for tables and soups of the experts
            _record_base(study, recipe, ctx, scheme, recipe_path, trust_remote_code, log)
        return ExpertsResult(study, name, experts, reused, mixtures)
    finally:
        close_storage(store)


def _record_base(study, recipe: Recipe, ctx, scheme: str, recipe_path, trust_remote_code: bool, log) -> None:
    from soupkit.base_model import load_model, pick_device, use_bf16
    from soupkit.data.load import load_recipe_families
    from soupkit.probes.score import ProbeSettings
    from soupkit.search.lifecycle import base_scores, record_base_model

    if ctx is not None:
        ctx.reset_model()
        model, probes, settings = (lambda: ctx.model), ctx.probes, ctx.probe_settings
    else:
        device = pick_device()
        probes = load_recipe_families(recipe, recipe_path.parent if recipe_path else None, log=log, scheme=scheme)[1]
        model = lambda: load_model(recipe.base, device, trust_remote_code=trust_remote_code)
        settings = ProbeSettings.from_recipe(recipe, use_bf16(device, recipe.finetune.bf16))
    record_base_model(study, recipe, base_scores(None, probes, model, settings, log), base_model=recipe.base)


def expert_soup_source(out: Path, storage: str | None, bank_name: str | None):
    """The trained experts of a bank (the last made by default) as soup candidates, best objective
    first; their soups are recorded in the expert study."""
    import optuna

    from soupkit.search.merge_proxy import find_expert_study, load_expert_bank
    from soupkit.search.study import default_storage, open_storage, search_study_names
    from soupkit.soups.study_soup import Ingredient, SoupSource, study_recipe

    if storage is None and not (Path(out) / "study.db").is_file():
        raise SoupkitError(f"no study found: {Path(out) / 'study.db'} does not exist (run `soupkit experts` first)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(storage or default_storage(Path(out)))
    experts = [n for n in optuna.get_all_study_summaries(store, include_best_trial=False)
               if n.study_name.endswith(".experts")]
    names = [n.study_name.removesuffix(".experts") for n in experts] or search_study_names(store)
    if len(names) != 1:
        raise SoupkitError(f"storage holds experts of {len(names)} studies ({', '.join(names)}); one is expected")
    study = find_expert_study(store, names[0], str(out))
    recipe = study_recipe(study)
    bank = load_expert_bank(store, recipe.name, recipe.family_names(), bank_name, str(out))
    by_number = {t.number: TrialRecord.of(t) for t in study.get_trials(deepcopy=False)}
    candidates = [Ingredient(n, by_number[n].checkpoint, float(by_number[n].objective), by_number[n].scores)
                  for n in bank.trials]
    candidates.sort(key=lambda c: (-c.objective, c.trial))
    return SoupSource(study, recipe, candidates, StudyRecord.of(study).base_scores, label="expert",
                      tag=f"{bank.name}-experts")


def _train_expert(study, ctx, family: str, mixture: dict, key: str, share: float, bank: str):
    """One expert as a trial of the expert study (RUNNING while it trains, then COMPLETE, or FAIL
    with its error: the next run trains it again)."""
    from soupkit.search.lifecycle import (
        ask_mixture,
        failure_as_one_line,
        run_and_tell,
        train_and_score,
    )

    trial, weights = ask_mixture(study, list(ctx.families), mixture)

    def body(trial) -> list[float]:
        record_expert(trial, key, family, share, ctx.recipe.base, ctx.finetune.model_dump(mode="json"), bank)
        return train_and_score(trial, ctx, weights, {"family": family, "general_share": share,
                                                     "base": ctx.recipe.base, "bank": bank})

    with failure_as_one_line(f"expert #{trial.number} ({family})"):
        return run_and_tell(study, trial, ctx, body)


def experts_table(result: ExpertsResult) -> str:
    """Per-probe scores of each expert of the bank, and the base's when recorded."""
    import polars as pl

    from soupkit.report.tables import terminal_table

    by_number = {t.number: t for t in result.study.get_trials(deepcopy=False)}
    rows = []
    for family, number in result.experts.items():
        done = TrialRecord.of(by_number[number])
        rows.append({"expert": f"{family} (#{number})", "objective": done.objective, **done.scores})
    base = StudyRecord.of(result.study)
    if base.base_scores:
        rows.append({"expert": "base", "objective": base.base_objective, **base.base_scores})
    with terminal_table(len(rows), types=True):
        return str(pl.DataFrame(rows))
