"""Turn a recipe's family list into built TaskFamily objects, and check names without building."""

from __future__ import annotations

import time
from pathlib import Path

from soupkit.config import LocalFamily, Recipe, family_name, seed_mixture_of
from soupkit.data.family import TaskFamily
from soupkit.data.halves import EVERY_PROBE_HALVED, selection_half, test_half, trained_probe
from soupkit.data.minimum import LOCAL_MIN_PROBE, LOCAL_MIN_TRAIN, check_family_size
from soupkit.data.registry import FAMILIES, BuildOptions
from soupkit.errors import SoupkitError


def _registry():
    import soupkit.data.sources  # noqa: F401  (registers the built-in families)

    return FAMILIES


def build_options(recipe: Recipe, family: str | None = None, probe_only: bool = False) -> BuildOptions:
    """Build options for `family`: the recipe's probe sizes, or its `probes.sizes` entry; a
    probe-only family's probe may draw on all of its source."""
    p = recipe.probes
    own = p.sizes.get(family) if family else None
    size = own.probe_size if own and own.probe_size else p.probe_size
    corpus = own.probe_corpus if own and own.probe_corpus else max(p.probe_corpus, 2 * size if own else 0)
    share = 1.0 if probe_only else BuildOptions.probe_share
    distractors = own.distractors if own and own.distractors else p.distractors
    return BuildOptions(seed=recipe.seed, probe_size=size, probe_corpus=corpus, max_train=p.max_train,
                        probe_share=share, probe_distractors=distractors)


def build_family(
    entry: str | LocalFamily, options: BuildOptions, base_dir: Path | None = None, probe_only: bool = False
) -> TaskFamily:
    """Build a family and check it is big enough to train on (unless probe-only) and to probe."""
    if isinstance(entry, LocalFamily):
        from soupkit.data.local import build_local_family

        family = build_local_family(entry, options, base_dir)
        check_family_size(family, LOCAL_MIN_TRAIN, min(LOCAL_MIN_PROBE, options.probe_size),
                          f"{family.source}: give it more rows (a third of the documents, up to "
                          "probes.probe_corpus, are held back for the probe)", probe_only)
        return family
    info = _registry().get(entry)
    family = info.build(options)
    check_family_size(family, info.min_train, min(info.min_probe, options.probe_size),
                      f"its source ({info.source}) is damaged or incomplete; restore it with: {info.restore}",
                      probe_only)
    return family


def load_families(
    recipe: Recipe, base_dir: Path | None = None, log=None, probe_only: bool = False
) -> dict[str, TaskFamily]:
    """Build the families the recipe trains on, or, with `probe_only`, the selection halves of its
    held-out (probe-only) families: the only part of them a search or a soup may score."""
    if not probe_only:
        return _build(recipe, recipe.families, base_dir, log, probe_only=False)
    whole = _build(recipe, recipe.probe_only, base_dir, log, probe_only=True)
    return {name: selection_half(family, recipe.seed) for name, family in whole.items()}


def load_held_out_test_halves(recipe: Recipe, base_dir: Path | None = None, log=None) -> dict[str, TaskFamily]:
    """The test halves of the recipe's held-out probes. Only a final report may read them: the
    search, ingredient choice and soups see the selection halves (`load_recipe_families`), so a
    test-half score is a fair estimate of the chosen model, not one that helped choose it."""
    whole = _build(recipe, recipe.probe_only, base_dir, log, probe_only=True)
    return {name: test_half(family, recipe.seed) for name, family in whole.items()}


SPLITS = ("selection", "test")


def load_probes(recipe: Recipe, split: str = "test", base_dir: Path | None = None, log=None) -> dict[str, TaskFamily]:
    """Every probe of the recipe (trained families first, then held-out ones) on one half: the
    `selection` half that searches and soups score, or the `test` half that only the verdict
    (`soupkit eval`) reads. No family here has training examples."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    half = selection_half if split == "selection" else test_half
    trained = _build(recipe, recipe.families, base_dir, log, probe_only=False)
    held_out = _build(recipe, recipe.probe_only, base_dir, log, probe_only=True)
    return {name: half(family, recipe.seed) for name, family in {**trained, **held_out}.items()}


def _build(recipe: Recipe, entries, base_dir: Path | None, log, probe_only: bool) -> dict[str, TaskFamily]:
    families: dict[str, TaskFamily] = {}
    for entry in entries:
        start = time.perf_counter()
        family = build_family(entry, build_options(recipe, family_name(entry), probe_only), base_dir, probe_only)
        if not probe_only and not family.train:
            raise SoupkitError(f"family '{family.name}' has no training examples")
        if probe_only and family.probe is None:
            raise SoupkitError(f"probe-only family '{family.name}' has no probe")
        families[family.name] = family
        if log:
            log(f"family {family.name}: {len(family.train)} train, probe {family.probe.sizes() if family.probe else '-'}"
                f" ({time.perf_counter() - start:.1f}s)")
    return families


def probe_texts(family: TaskFamily) -> set[str]:
    probe = family.probe
    if probe is None:
        return set()
    fields = ("queries", "corpus", "train_texts", "test_texts", "texts", "left", "right")
    return {text for name in fields for text in getattr(probe, name, [])}


def drop_probe_leaks(families: dict[str, TaskFamily], probes: dict[str, TaskFamily]) -> dict[str, int]:
    """Remove training examples that contain any probe's text, across families.

    Each family's own split is disjoint, but two families built from one source (ICD-10 titles
    as retrieval targets and as chapter-classification texts) can train one on the other's probe.
    Returns {family: examples dropped}; families are changed in place.
    """
    held_out = set().union(*(probe_texts(f) for f in probes.values())) if probes else set()
    dropped = {}
    for name, family in families.items():
        kept = [
            e for e in family.train
            if e.anchor not in held_out and e.positive not in held_out and (e.negative is None or e.negative not in held_out)
        ]
        if len(kept) != len(family.train):
            dropped[name] = len(family.train) - len(kept)
            family.train = kept
        if not family.train:
            raise SoupkitError(f"family '{name}' has no training examples left once other probes' texts are held out")
    return dropped


def load_recipe_families(recipe: Recipe, base_dir: Path | None = None, log=None, scheme: str = EVERY_PROBE_HALVED):
    """(families trained on, every family probed) with no probe text anywhere in training. Every
    probe comes as its selection half (soupkit.data.halves; a trained family's whole probe under
    an older study's `scheme`); the test halves are reachable only through `load_probes(split="test")`."""
    families = load_families(recipe, base_dir, log=log)
    held_out = _build(recipe, recipe.probe_only, base_dir, log, probe_only=True)
    # both halves of a held-out probe stay out of training; only the selection half is scored
    dropped = drop_probe_leaks(families, {**families, **held_out})
    if log and dropped:
        log("held out other probes' texts from training: " + ", ".join(f"{k} -{v}" for k, v in dropped.items()))
    selection = {name: selection_half(family, recipe.seed) for name, family in held_out.items()}
    trained = {name: trained_probe(family, recipe.seed, scheme) for name, family in families.items()}
    probes = {**trained, **selection}
    halved = [k for k, f in probes.items() if f is not families.get(k)]
    if log and halved:
        log("probes scored on their selection halves (the test halves are for soupkit eval): "
            + ", ".join(f"{k} {probes[k].probe.sizes()}" for k in halved))
    return families, probes


def probes_for_scheme(families: dict[str, TaskFamily], probes: dict[str, TaskFamily], seed: int,
                      scheme: str) -> dict[str, TaskFamily]:
    """`probes` (as `load_recipe_families` made them) with each trained family's probe as `scheme`
    scores it: how a resumed older study keeps scoring its trained families on their whole probes."""
    return {**probes, **{name: trained_probe(family, seed, scheme) for name, family in families.items()}}


def check_recipe(recipe: Recipe, recipe_path: Path | None = None) -> list[str]:
    """Cross-field checks that need the registry but no data: names that must exist, exist."""
    where = str(recipe_path) if recipe_path else f"recipe '{recipe.name}'"
    registry = _registry()
    names = recipe.family_names()
    for field, entries in (("families", recipe.families), ("probe_only", recipe.probe_only)):
        for entry in entries:
            if isinstance(entry, str) and entry not in registry:
                raise SoupkitError(f"{where}: {field}: {registry.unknown_message(entry)}")
    seed = seed_mixture_of(recipe, recipe_path)
    if seed is not None:
        for family in seed.weights:
            if family not in names:
                raise SoupkitError(f"{where}: seed_mixture: family '{family}' is not in the recipe's families")
    probes = recipe.probe_names()
    for probe in recipe.probes.sizes:
        if probe not in probes:
            raise SoupkitError(f"{where}: probes.sizes: {_unknown_probe(probe, probes)}")
    for field, listed in (("objective.weights", recipe.objective.weights), ("objective.domain", recipe.objective.domain)):
        for probe in listed:
            name, _, view = probe.partition("@")
            if name not in probes:
                raise SoupkitError(f"{where}: {field}: {_unknown_probe(name, probes)}")
            views = {str(d) for d in recipe.probes.dims} | set(recipe.probes.quantizations)
            if view and view not in views:
                raise SoupkitError(
                    f"{where}: {field}: '{probe}' is not scored; add {view} to probes.dims or probes.quantizations"
                )
    if recipe.objective.weights and sum(recipe.objective.weights.values()) <= 0:
        raise SoupkitError(f"{where}: objective.weights: weights are all zero")
    return names


def _unknown_probe(name: str, probes: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, probes, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else f"; probes: {', '.join(probes)}"
    return f"no probe named '{name}' (probes are family names){hint}"
