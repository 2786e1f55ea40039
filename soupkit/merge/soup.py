"""Soups from a search: merge the study's best checkpoints and score the result on the probes.

`uniform` averages the top-k trials. `greedy` is the model-soups recipe (Wortsman et al. 2022):
rank trials by validation objective, start from the best, add the next one only if the uniform
soup's validation objective does not drop. Any other merge method (ties, task_arithmetic, ...)
runs on the top-k with the search's base model as its base. Each soup is written under
`<run>/soups/<name>`, scored on the same probes, and recorded in the study's `soups` attribute.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from soupkit.atomic import atomic_dir
from soupkit.config import Recipe
from soupkit.errors import SoupkitError


@dataclass(frozen=True)
class Ingredient:
    trial: int
    checkpoint: Path
    objective: float
    scores: dict[str, float]


@dataclass
class SoupResult:
    name: str
    method: str
    members: list[int]
    path: Path
    scores: dict[str, float]
    objective: float
    ingredients: list[Ingredient]


def study_recipe(study) -> Recipe:
    stored = study.user_attrs.get("recipe")
    if stored is None:
        raise SoupkitError(f"study '{study.study_name}' has no recipe recorded; was it made by `soupkit search`?")
    return Recipe.model_validate(json.loads(stored))


def ranked_ingredients(study, from_front: bool = False) -> list[Ingredient]:
    """Completed trials whose checkpoint still exists, best scalar objective first (the weighted
    mean over every probe). With `from_front`, only trials on the study's Pareto front."""
    trials = study.best_trials if from_front else study.get_trials(deepcopy=False)
    found = []
    for t in trials:
        ckpt = t.user_attrs.get("checkpoint")
        if t.state.name == "COMPLETE" and ckpt and (Path(ckpt) / "modules.json").is_file():
            value = float(t.user_attrs.get("objective", t.values[0]))
            found.append(Ingredient(t.number, Path(ckpt), value, t.user_attrs.get("scores", {})))
    return sorted(found, key=lambda i: (-i.objective, i.trial))


def _merge(members: list[Ingredient], out: Path, method: str, base: str | None) -> None:
    from soupkit.merge.api import merge_models

    if len(members) == 1 and method in ("uniform", "weighted"):
        with atomic_dir(out) as tmp:  # a soup of one is that checkpoint
            shutil.copytree(members[0].checkpoint, tmp, dirs_exist_ok=True)
        return
    merge_models([m.checkpoint for m in members], out, method=method, base=base, overwrite=True)


def build_soup(
    study,
    run_dir: Path,
    method: str = "uniform",
    top_k: int = 5,
    name: str | None = None,
    log: Callable[[str], None] = print,
    from_front: bool = False,
) -> SoupResult:
    from soupkit.base_model import load_model, pick_device, resolve_base, use_bf16
    from soupkit.data.load import load_recipe_families
    from soupkit.probes.score import ProbeSettings, objective_value, score_probes, study_values

    if top_k < 1:
        raise SoupkitError(f"--top-k must be at least 1, got {top_k}")
    recipe = study_recipe(study)
    ranked = ranked_ingredients(study, from_front)
    if not ranked:
        raise SoupkitError(f"study '{study.study_name}' has no completed trial with a checkpoint to soup")
    candidates = ranked[:top_k]
    _, families = load_recipe_families(recipe)
    device = pick_device()
    settings = ProbeSettings.from_recipe(recipe, use_bf16(device, recipe.finetune.bf16))

    def score(path: Path) -> dict[str, float]:
        return score_probes(load_model(str(path), device), families, settings)

    name = name or f"{method}-{'front' if from_front else 'top'}{top_k}"
    out = run_dir / "soups" / name
    base = resolve_base(recipe.base)
    if method == "greedy":
        members = [candidates[0]]
        best = candidates[0].objective
        log(f"greedy soup: start with trial {candidates[0].trial} ({best:.4f})")
        with tempfile.TemporaryDirectory(dir=run_dir) as scratch:
            for cand in candidates[1:]:
                trial_out = Path(scratch) / f"with-{cand.trial}"
                _merge(members + [cand], trial_out, "uniform", None)
                value = objective_value(score(trial_out), recipe.objective.weights)
                kept = value >= best
                log(f"  + trial {cand.trial}: soup {value:.4f} vs {best:.4f} -> {'keep' if kept else 'skip'}")
                if kept:
                    members, best = members + [cand], value
        _merge(members, out, "uniform", None)
    else:
        from soupkit.merge.methods import METHODS

        members = candidates
        _merge(members, out, method, base if METHODS.get(method).base != "ignored" else None)

    scores = score(out)
    value = objective_value(scores, recipe.objective.weights)
    soups = dict(study.user_attrs.get("soups") or {})
    soups[name] = {
        "method": method,
        "members": [m.trial for m in members],
        "scores": scores,
        "objective": value,
        "values": study_values(scores, recipe.objective),
        "path": str(out.resolve()),
    }
    study.set_user_attr("soups", soups)
    return SoupResult(name, method, [m.trial for m in members], out, scores, value, candidates)


def soup_table(study, result: SoupResult) -> str:
    """Per-probe scores: the soup, each candidate ingredient, and the base model."""
    import polars as pl

    rows = [{"model": f"soup {result.name}", "objective": result.objective, **result.scores}]
    for ing in result.ingredients:
        mark = "*" if ing.trial in result.members else " "
        rows.append({"model": f"{mark}trial {ing.trial}", "objective": ing.objective, **ing.scores})
    base = study.user_attrs.get("base_scores") or {}
    rows.append({"model": "base", "objective": study.user_attrs.get("base_objective"), **base})
    with pl.Config(tbl_rows=len(rows), tbl_cols=-1, float_precision=3, tbl_width_chars=200,
                   tbl_hide_dataframe_shape=True):
        return f"{pl.DataFrame(rows)}\n(* = in the soup)"
