"""Score a model on the families' validation probes, and fold scores into the search objective."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from typing import TYPE_CHECKING

from soupkit.probes.encode import encode_texts
from soupkit.probes.views import views_for
from soupkit.prompts import prompt_for

if TYPE_CHECKING:  # a family (soupkit.data) holds a probe; probes know nothing of where data comes from
    from soupkit.data.family import TaskFamily


@dataclass(frozen=True)
class ProbeSettings:
    batch_size: int = 64
    max_seq_length: int = 128
    bf16: bool = False
    seed: int = 0
    dims: tuple[int, ...] = ()  # also score at these Matryoshka dims ("<probe>@<dim>")
    quantizations: tuple[str, ...] = ()  # also score on "int8" / "binary" codes ("<probe>@int8")

    @classmethod
    def from_recipe(cls, recipe, bf16: bool) -> ProbeSettings:
        p = recipe.probes
        return cls(p.batch_size, p.max_seq_length, bf16, recipe.seed, tuple(p.dims), tuple(p.quantizations))


def _encode_probe(model, family: TaskFamily, settings: ProbeSettings) -> list[np.ndarray]:
    prompts = getattr(model, "prompts", None)
    return [
        encode_texts(model, texts, prompt_for(prompts, family.task, role), settings.batch_size, settings.bf16)
        for texts, role in family.probe.text_columns()
    ]


def score_family_probe(model, family: TaskFamily, settings: ProbeSettings) -> dict[str, float]:
    """{name: primary metric} of one family's probe: full embeddings, then each view of them."""
    if family.probe is None:
        raise TypeError(f"family '{family.name}' has no probe")
    arrays = _encode_probe(model, family, settings)
    scores = {family.name: family.probe.score(arrays, settings.seed)}
    width = arrays[0].shape[1]
    for suffix, view in views_for(list(settings.dims), list(settings.quantizations), width).items():
        scores[f"{family.name}@{suffix}"] = family.probe.score(view(arrays), settings.seed)
    return scores


def per_item_scores(model, family: TaskFamily, settings: ProbeSettings) -> np.ndarray | None:
    """Each item's score on the family's probe (a query's nDCG@10, a test text's 1/0 label hit),
    whose mean is the probe score; None for probes that score a set (clustering, similarity)."""
    if family.probe is None or not family.probe.itemwise:
        return None
    previous = model.max_seq_length
    model.max_seq_length = settings.max_seq_length
    try:
        arrays = _encode_probe(model, family, settings)
    finally:
        model.max_seq_length = previous
    return family.probe.per_item(arrays, settings.seed)


def score_and_items(model, family: TaskFamily, settings: ProbeSettings) -> tuple[float, np.ndarray | None]:
    """The family's probe score and, for an itemwise probe, each item's score (their mean is the
    score), from one encoding: what a verdict needs of each model on each probe."""
    if family.probe is None:
        raise TypeError(f"family '{family.name}' has no probe")
    previous = model.max_seq_length
    model.max_seq_length = settings.max_seq_length
    try:
        arrays = _encode_probe(model, family, settings)
    finally:
        model.max_seq_length = previous
    items = family.probe.per_item(arrays, settings.seed) if family.probe.itemwise else None
    score = float(np.mean(items)) if items is not None else family.probe.score(arrays, settings.seed)
    return score, items


def score_probes(model, families: Mapping[str, TaskFamily], settings: ProbeSettings) -> dict[str, float]:
    """{probe name: primary metric} for every family with a probe (probe name = family name),
    plus `<name>@<view>` entries for the Matryoshka dims and quantisations asked for."""
    previous = model.max_seq_length
    model.max_seq_length = settings.max_seq_length
    try:
        scores: dict[str, float] = {}
        for fam in families.values():
            if fam.probe is not None:
                scores.update({k: round(v, 6) for k, v in score_family_probe(model, fam, settings).items()})
        return scores
    finally:
        model.max_seq_length = previous


def is_view(probe: str) -> bool:
    return "@" in probe


def pareto_values(scores: Mapping[str, float], weights: Mapping[str, float], domain: list[str]) -> tuple[float, float]:
    """(domain, general): weighted means over the domain probes and over every other probe."""
    in_domain = {k: v for k, v in scores.items() if k.split("@")[0] in domain}
    general = {k: v for k, v in scores.items() if k.split("@")[0] not in domain}
    if not in_domain or not general:
        raise ValueError("a pareto objective needs at least one domain probe and one general probe")
    return objective_value(in_domain, weights), objective_value(general, weights)


def told(values: list[float]) -> float | list[float]:
    """Objective values as an Optuna objective returns them: one number for a one-objective study."""
    return values[0] if len(values) == 1 else values


def study_values(scores: Mapping[str, float], objective) -> list[float]:
    """What a trial reports to the study: [weighted mean], or [domain, general] for `pareto`."""
    if objective.two_objectives:
        return list(pareto_values(scores, objective.weights, objective.domain))
    return [objective_value(scores, objective.weights)]


def objective_value(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Weighted mean of probe scores. A probe without a declared weight weighs 1, a view of one
    (`probe@256`, `probe@int8`) 0: views count only when the recipe targets them."""
    total = weight_sum = 0.0
    for probe, score in scores.items():
        w = weights.get(probe, 0.0 if is_view(probe) else 1.0)
        total += w * score
        weight_sum += w
    if weight_sum <= 0:
        raise ValueError("objective weights sum to zero")
    return total / weight_sum
