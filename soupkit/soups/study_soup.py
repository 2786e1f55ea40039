"""Soups from a search: merge the study's best checkpoints and score the result on the probes.

`uniform` averages the top-k trials. `greedy` is the model-soups recipe (Wortsman et al. 2022):
rank trials by validation objective, start from the best, add the next one only if the uniform
soup's validation objective does not drop. Any other merge method (ties, task_arithmetic, ...)
runs on the top-k with the search's base model as its base. Each soup is written under
`<run>/soups/<name>`, scored on the same probes, and recorded in the study's `soups` attribute.

The ingredients may also be those of `soupkit ingredients` (`soupkit.soups.ingredients`): a
`SoupSource` says what is souped, from which base model, and in which study the soup is recorded.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from soupkit.atomic import atomic_dir, check_can_write, replace_folder
from soupkit.config import ObjectiveSpec, Recipe, plain_name_problem
from soupkit.errors import SoupkitError
from soupkit.study_record import SoupRecord, StudyRecord, TrialRecord, record_soup


@dataclass(frozen=True)
class Ingredient:
    trial: int
    checkpoint: Path
    objective: float
    scores: dict[str, float]


@dataclass(frozen=True)
class SoupSource:
    """What a soup is made of: candidates best first, the model they were finetuned from (the
    base of task-vector methods and of --with-base), and the study the soup is recorded in."""

    study: object
    recipe: Recipe  # its `base` is the candidates' base model
    candidates: list[Ingredient]
    base_scores: dict[str, float]
    label: str = "trial"  # what a candidate is called in tables: "trial", "ingredient"
    base_folder: str = "base-model"  # where the base model is saved in the run folder, to merge with
    tag: str = ""  # added to default soup names, so soups of different sources do not collide


@dataclass
class SoupResult:
    name: str
    method: str
    members: list[int]
    path: Path
    scores: dict[str, float]
    objective: float
    ingredients: list[Ingredient]
    base_share: float = 0.0  # the base model's weight in the soup (--with-base)
    base_scores: dict[str, float] | None = None
    base_objective: float | None = None
    label: str = "trial"


@dataclass(frozen=True)
class GreedyCriterion:
    """What a greedy soup maximises, as a key that compares with `>=`.

    Weighted recipes: the objective. Pareto recipes: the domain score, but first the general
    shortfall: how far, summed over the general probes, the soup falls more than `tolerance`
    below the base model. A soup with a smaller shortfall beats any with a larger one, so once
    the soup is within tolerance of the base everywhere, no ingredient may take it out again.
    """

    objective: ObjectiveSpec
    base_scores: Mapping[str, float]
    tolerance: float | None = 0.01

    def general_shortfall(self, scores: Mapping[str, float]) -> float:
        from soupkit.probes.score import is_view

        if not self.objective.two_objectives or self.tolerance is None:
            return 0.0
        return sum(
            max(0.0, self.base_scores[probe] - self.tolerance - score)
            for probe, score in scores.items()
            if not is_view(probe) and probe not in self.objective.domain and probe in self.base_scores
        )

    def key(self, scores: Mapping[str, float]) -> tuple[float, float]:
        from soupkit.probes.score import study_values

        return (-round(self.general_shortfall(scores), 9), study_values(scores, self.objective)[0])


def study_recipe(study) -> Recipe:
    recipe = StudyRecord.of(study).recipe()
    if recipe is None:
        raise SoupkitError(f"study '{study.study_name}' has no recipe recorded; was it made by `soupkit search`?")
    return recipe


def ranked_ingredients(study, from_front: bool = False, run: Path | None = None) -> list[Ingredient]:
    """Completed trials whose checkpoint still exists, best scalar objective first (the weighted
    mean over every probe). With `from_front`, only trials on the study's Pareto front. Given the
    run folder, a copied or moved run's own models are read (TrialRecord.checkpoint_in)."""
    trials = study.best_trials if from_front else study.get_trials(deepcopy=False)
    found = []
    for record in map(TrialRecord.of, trials):
        if record.has_model(run):
            found.append(Ingredient(record.number, record.checkpoint_in(run), record.objective, record.scores))
    return sorted(found, key=lambda i: (-i.objective, i.trial))


def trial_source(study, from_front: bool = False, run: Path | None = None) -> SoupSource:
    """The search's own trials as soup candidates (those in run folder `run`, when given)."""
    return SoupSource(study, study_recipe(study), ranked_ingredients(study, from_front, run),
                      StudyRecord.of(study).base_scores, tag="front" if from_front else "top")


def merge_folders(paths: list[Path], out: Path, method: str = "uniform", base: str | None = None,
                  weights: list[float] | None = None, command: str | None = None) -> None:
    """A soup's folder: a soup of one model is that folder, copied; several are merged."""
    from soupkit.merge.api import merge_models

    if len(paths) == 1 and method in ("uniform", "weighted"):
        with atomic_dir(out) as tmp:
            shutil.copytree(paths[0], tmp, dirs_exist_ok=True)
        return
    merge_models(list(paths), out, method=method, weights=weights, base=base, overwrite=True, command=command)


def default_soup_name(method: str, tag: str, top_k: int, with_base: bool = False) -> str:
    """The folder name soups/<name> of a soup not given --name: "uniform-top5", "greedy-front3-base"."""
    return f"{method}-{tag}{top_k}{'-base' if with_base else ''}"


def build_soup(
    study,
    run_dir: Path,
    method: str = "uniform",
    top_k: int = 5,
    name: str | None = None,
    log: Callable[[str], None] = print,
    from_front: bool = False,
    with_base: bool = False,
    general_tolerance: float | None = 0.01,
    source: SoupSource | None = None,
) -> SoupResult:
    """A soup of the search's trials, or of `source`'s candidates (ingredients)."""
    from soupkit.base_model import load_model, pick_device, resolve_base, use_bf16
    from soupkit.data.load import load_recipe_families
    from soupkit.probes.score import ProbeSettings, objective_value, score_probes, study_values

    if top_k < 1:
        raise SoupkitError(f"--top-k must be at least 1, got {top_k}")
    if name is not None and plain_name_problem(name):
        raise SoupkitError(f"--name: {plain_name_problem(name)}; it names the folder soups/<name>")
    if with_base and method not in ("uniform", "greedy"):
        raise SoupkitError(f"--with-base works with --method uniform or greedy, not '{method}' (it uses the base already)")
    if general_tolerance is not None and not 0 <= general_tolerance <= 1:  # NaN fails both
        raise SoupkitError(f"--general-tolerance must be between 0 and 1 (score units), got {general_tolerance}")
    from soupkit.search.study import check_held_out_halves

    scheme = check_held_out_halves(study, study_recipe(study))  # ingredients are scored as the search's trials
    source = source or trial_source(study, from_front, run_dir)
    study, recipe, ranked, base_scores = source.study, source.recipe, source.candidates, source.base_scores
    if not ranked:
        raise SoupkitError(f"study '{study.study_name}' has no completed {source.label} with a checkpoint to soup")
    if recipe.objective.two_objectives and method == "greedy" and not base_scores:
        raise SoupkitError(f"study '{study.study_name}' has no base_scores: a pareto greedy soup compares with the base")
    bound = GreedyCriterion(recipe.objective, base_scores, general_tolerance)
    # with the base to pull the soup back afterwards, ingredients are chosen for the domain alone
    select = GreedyCriterion(recipe.objective, base_scores, None if with_base else general_tolerance)
    if method == "greedy":
        ranked = sorted(ranked, key=lambda i: (select.key(i.scores), -i.trial), reverse=True)
    candidates = ranked[:top_k]
    name = name or default_soup_name(method, source.tag, top_k, with_base)
    out = run_dir / "soups" / name
    _check_soup_inputs(candidates, out, source.label)
    _, families = load_recipe_families(recipe, scheme=scheme)
    device = pick_device()
    settings = ProbeSettings.from_recipe(recipe, use_bf16(device, recipe.finetune.bf16))

    def score(path: Path) -> dict[str, float]:
        from soupkit.models.trunk import join_trunk_cache

        model = load_model(str(path), device, what="soup")
        join_trunk_cache(model, recipe.finetune.train, recipe.base)  # a soup of top:<k> trials keeps the base's bottom
        return score_probes(model, families, settings)

    share = 0.0
    # everything is written and scored under a temporary name; only a whole, scored soup is renamed
    # to soups/<name>, so a failure at any point leaves nothing under that name
    with tempfile.TemporaryDirectory(prefix=f".tmp-soup-{name}-", dir=run_dir) as scratch:
        if method == "greedy":
            members, soup_scores = [candidates[0]], candidates[0].scores
            best = select.key(soup_scores)
            log(f"greedy soup: start with {source.label} {candidates[0].trial} ({_describe(best)})")
            for cand in candidates[1:]:
                trial_out = Path(scratch) / f"with-{cand.trial}"
                merge_folders([m.checkpoint for m in members + [cand]], trial_out)
                cand_scores = score(trial_out)
                key = select.key(cand_scores)
                kept = key >= best
                log(f"  + {source.label} {cand.trial}: soup {_describe(key)} vs {_describe(best)} -> {'keep' if kept else 'skip'}")
                if kept:
                    members, best, soup_scores = members + [cand], key, cand_scores
        else:
            members, soup_scores = candidates, None
        base_path = saved_base(recipe.base, run_dir / source.base_folder, recipe, device) if with_base else None
        if base_path is not None:
            share = _base_share(members, soup_scores, base_path, bound, score, Path(scratch), log)
        # written afresh and scored again: the recorded scores are those of the folder on disk
        staged = Path(scratch) / "soup"
        if share:
            _merge_with_base(members, base_path, share, staged)
        elif method in ("uniform", "greedy"):
            merge_folders([m.checkpoint for m in members], staged)
        else:
            from soupkit.merge.methods import METHODS

            base = resolve_base(recipe.base)
            merge_folders([m.checkpoint for m in members], staged, method,
                          base if METHODS.get(method).base != "ignored" else None)
        scores = score(staged)
        replace_folder(staged, out)
    value = objective_value(scores, recipe.objective.weights)
    record_soup(study, name, SoupRecord(method, [m.trial for m in members], scores, value,
                                        study_values(scores, recipe.objective), str(out.resolve()), share))
    base_value = objective_value(base_scores, recipe.objective.weights) if base_scores else None
    return SoupResult(name, method, [m.trial for m in members], out, scores, value, candidates, share, base_scores,
                      base_value, source.label)


def _check_soup_inputs(candidates: list[Ingredient], out: Path, label: str = "trial") -> None:
    """Before anything is written: every ingredient is a whole model folder (a trial whose weights
    file went missing is named, with the file), and the soup's folder can be written."""
    from soupkit.model_folder import read_model_folder

    for ingredient in candidates:
        try:
            read_model_folder(ingredient.checkpoint)
        except SoupkitError as exc:
            raise SoupkitError(f"{label} {ingredient.trial}: {exc}") from None
    check_can_write(out, "soup folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "modules.json").is_file():
        raise SoupkitError(f"soup folder {out} exists and is not a model folder; move it away or choose another --name")


def saved_base(reference: str, path: Path, recipe: Recipe, device: str) -> Path:
    """A base model saved as the checkpoints are (same library versions, so the same module files
    and config keys; a hub id becomes a folder), so that it merges with them; once, to `path`."""
    from soupkit.base_model import load_model

    if not (path / "modules.json").is_file():
        model = load_model(reference, device)
        model.max_seq_length = recipe.finetune.max_seq_length
        with atomic_dir(path) as tmp:
            model.save(str(tmp))
    return path


BASE_SHARES = (0.25, 0.5, 0.75)  # the base model's weight tried, smallest first, after the plain soup


def _base_share(members, soup_scores, base: Path, bound: GreedyCriterion, score, scratch: Path, log) -> float:
    """The smallest share of the base model in the soup that brings every general probe within
    the bound (WiSE-FT, Wortsman et al. 2022: interpolating a finetune with the model it came from
    keeps most of the gain and most of what the base could do); if none does, the best one. A
    weighted (single-objective) recipe has no bound: the share with the best objective wins.
    `soup_scores` are the plain soup's scores when already known."""
    best_share, best = 0.0, None
    for share in (0.0, *BASE_SHARES):
        if share == 0.0 and soup_scores is not None:  # the plain soup, already scored by greedy
            key = bound.key(soup_scores)
        else:
            path = scratch / f"base-{share}"
            _merge_with_base(members, base, share, path)
            key = bound.key(score(path))
        log(f"  base model share {share:.2f}: soup {_describe(key)}")
        if best is None or key > best:
            best_share, best = share, key
        if key[0] == 0.0 and bound.objective.two_objectives:
            break
    return best_share


def _merge_with_base(members: list[Ingredient], base: Path, share: float, out: Path) -> None:
    """The uniform soup of `members`, averaged with the base model at weight `share`."""
    paths = [m.checkpoint for m in members]
    if share == 0.0:
        merge_folders(paths, out)
    else:
        merge_folders(paths + [base], out, "weighted", weights=[(1.0 - share) / len(members)] * len(members) + [share])


def _describe(key: tuple[float, float]) -> str:
    shortfall, value = -key[0], key[1]
    return f"{value:.4f}" + (f", {shortfall:.4f} below the general bound" if shortfall > 0 else "")


def soup_table(result: SoupResult) -> str:
    """Per-probe scores, a probe per row: the soup, each candidate ingredient, and the base model
    (a column per model, so that a recipe with many probes still fits a terminal)."""
    import polars as pl

    from soupkit.report.tables import terminal_table

    columns = {f"soup{f' +base {result.base_share:.2f}' if result.base_share else ''}": (result.objective, result.scores)}
    for ing in result.ingredients:
        mark = "*" if ing.trial in result.members else ""
        columns[f"{mark}{result.label} {ing.trial}"] = (ing.objective, ing.scores)
    columns["base"] = (result.base_objective, result.base_scores or {})
    probes = list(result.scores)
    table = {"probe": ["objective", *probes]}
    for name, (objective, scores) in columns.items():
        table[name] = [objective, *(scores.get(p) for p in probes)]
    with terminal_table(len(probes) + 1):
        return f"soup {result.name}: scores by probe\n{pl.DataFrame(table)}\n(* = in the soup)"
