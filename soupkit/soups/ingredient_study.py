"""Where ingredients are recorded: a second Optuna study beside the search's, in the same storage.

The search study stays the search's alone, so its sampler, budget and report never see an
ingredient. The ingredient study is named `<search study>.ingredients` and marked with the study
attribute `stage: ingredients`. Each trial of it is one ingredient (params: the mixture, in the
search's parameter space; user attributes: `mixture`, `source_trial`, `base`, `finetune`, `key`,
`checkpoint`, `scores`, `objective`, `seconds`). Study attributes:

- `sets`: {name: the choice of one `soupkit ingredients` call} with its settings, the source
  trials, their mixtures and distances, and the ingredient trial of each (None until trained);
- `bases`: {base model: its probe scores}, for ingredients finetuned from another base;
- `soups`: the soups made of ingredients (as the search study's `soups`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from soupkit.errors import SoupkitError
from soupkit.study_record import StudyRecord, TrialRecord, ingredient_sets, record_beside, record_ingredient_set

__all__ = ["IngredientSet", "ingredient_key", "ingredient_study_name", "open_ingredient_study", "load_set",
           "record_set"]

SUFFIX = ".ingredients"
STAGE = "ingredients"


@dataclass
class IngredientSet:
    """One choice of K mixtures and how they are finetuned; `ingredients[i]` is the ingredient
    trial that trained `sources[i]` (None until it is trained)."""

    name: str
    select: str
    k: int
    pool: int
    from_front: bool
    base: str
    finetune: dict
    sources: list[int]
    mixtures: list[dict[str, float]]
    distances: list[list[float]]
    ingredients: list[int | None] = field(default_factory=list)

    def settings(self) -> dict:
        """What decides the choice and the training: a re-run with other settings is another set."""
        return {"select": self.select, "k": self.k, "pool": self.pool, "from_front": self.from_front,
                "base": self.base, "finetune": self.finetune}


def ingredient_study_name(search_study_name: str) -> str:
    return search_study_name + SUFFIX


def open_ingredient_study(storage, search_study):
    """The ingredient study of `search_study` (created on first use), in the same storage."""
    import optuna

    study = optuna.create_study(
        storage=storage, study_name=ingredient_study_name(search_study.study_name), directions=search_study.directions,
        sampler=optuna.samplers.RandomSampler(seed=0),  # every mixture is fixed in advance: nothing is sampled
        load_if_exists=True,
    )
    if StudyRecord.of(study).stage != STAGE:
        record_beside(study, STAGE, search_study.study_name)
    return study


def find_ingredient_study(storage, search_study):
    """The ingredient study of `search_study`, or an error saying how to make one."""
    import optuna

    name = ingredient_study_name(search_study.study_name)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise SoupkitError(f"study '{search_study.study_name}' has no ingredients yet; "
                           "make them with `soupkit ingredients --out RUN`") from None


def load_set(study, name: str | None) -> IngredientSet:
    """A recorded set by name; without a name, the set recorded last."""
    sets = ingredient_sets(study)
    if not sets:
        raise SoupkitError(f"study '{study.study_name}' records no ingredient set; run `soupkit ingredients` first")
    if name is None:
        name = list(sets)[-1]
    if name not in sets:
        raise SoupkitError(f"no ingredient set named '{name}' (recorded: {', '.join(sets)})")
    return IngredientSet(name=name, **sets[name])


def record_set(study, chosen: IngredientSet) -> None:
    record_ingredient_set(study, chosen.name, {k: v for k, v in chosen.__dict__.items() if k != "name"})


def ingredient_key(mixture: Mapping[str, float], base: str, finetune: dict, seed: int) -> str:
    """What makes two ingredients the same model: mixture, base, finetune settings and seed. An
    ingredient trained for one set is reused by any other set that needs the same one."""
    weights = {k: round(float(v), 6) for k, v in sorted(mixture.items())}
    return json.dumps({"mixture": weights, "base": base, "finetune": finetune, "seed": seed}, sort_keys=True)


def checkpoint_of(trial, run: Path | None = None) -> Path | None:
    """An ingredient's model folder, if it is on disk (a copied or moved run's own: checkpoint_in)."""
    ckpt = TrialRecord.of(trial).checkpoint_in(run)
    return ckpt if ckpt and (ckpt / "modules.json").is_file() else None
