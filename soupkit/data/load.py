"""Turn a recipe's family list into built TaskFamily objects, and check names without building."""

from __future__ import annotations

import time
from pathlib import Path

from soupkit.config import LocalFamily, Recipe, family_name, seed_mixture_of
from soupkit.data.family import TaskFamily
from soupkit.data.registry import FAMILIES, BuildOptions
from soupkit.errors import SoupkitError


def _registry():
    import soupkit.data.sources  # noqa: F401  (registers the built-in families)

    return FAMILIES


def build_options(recipe: Recipe) -> BuildOptions:
    p = recipe.probes
    return BuildOptions(seed=recipe.seed, probe_size=p.probe_size, probe_corpus=p.probe_corpus, max_train=p.max_train)


def build_family(entry: str | LocalFamily, options: BuildOptions, base_dir: Path | None = None) -> TaskFamily:
    if isinstance(entry, LocalFamily):
        from soupkit.data.local import build_local_family

        return build_local_family(entry, options, base_dir)
    return _registry().get(entry).build(options)


def load_families(recipe: Recipe, base_dir: Path | None = None, log=None) -> dict[str, TaskFamily]:
    """Build every family the recipe names, in recipe order."""
    options = build_options(recipe)
    families: dict[str, TaskFamily] = {}
    for entry in recipe.families:
        start = time.perf_counter()
        family = build_family(entry, options, base_dir)
        if not family.train:
            raise SoupkitError(f"family '{family.name}' has no training examples")
        families[family.name] = family
        if log:
            log(f"family {family.name}: {len(family.train)} train, probe {family.probe.sizes() if family.probe else '-'}"
                f" ({time.perf_counter() - start:.1f}s)")
    return families


def check_recipe(recipe: Recipe, recipe_path: Path | None = None) -> list[str]:
    """Cross-field checks that need the registry but no data: names that must exist, exist."""
    where = str(recipe_path) if recipe_path else f"recipe '{recipe.name}'"
    registry = _registry()
    names = recipe.family_names()
    for entry in recipe.families:
        if isinstance(entry, str) and entry not in registry:
            raise SoupkitError(f"{where}: families: {registry.unknown_message(entry)}")
    seed = seed_mixture_of(recipe, recipe_path)
    if seed is not None:
        for family in seed.weights:
            if family not in names:
                raise SoupkitError(f"{where}: seed_mixture: family '{family}' is not in the recipe's families")
    for probe in recipe.objective.weights:
        if probe not in names:
            raise SoupkitError(f"{where}: objective.weights: no probe named '{probe}' (probes are family names)")
    if recipe.objective.weights and sum(recipe.objective.weights.values()) <= 0:
        raise SoupkitError(f"{where}: objective.weights: weights are all zero")
    return names
