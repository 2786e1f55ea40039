"""Score a model on the families' validation probes, and fold scores into the search objective."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from soupkit.data.family import (
    ClassificationProbeData,
    ClusteringProbeData,
    RetrievalProbeData,
    SimilarityProbeData,
    TaskFamily,
)
from soupkit.probes.encode import encode_texts
from soupkit.probes.metrics import classification_accuracy, clustering_v_measure, ndcg_at_k, similarity_spearman
from soupkit.prompts import prompt_for


@dataclass(frozen=True)
class ProbeSettings:
    batch_size: int = 64
    max_seq_length: int = 128
    bf16: bool = False
    seed: int = 0


def score_family_probe(model, family: TaskFamily, settings: ProbeSettings) -> float:
    """The primary metric of one family's probe (higher is better for all of them)."""
    probe, prompts = family.probe, getattr(model, "prompts", None)

    def enc(texts: list[str], role: str):
        return encode_texts(model, texts, prompt_for(prompts, family.task, role), settings.batch_size, settings.bf16)

    if isinstance(probe, RetrievalProbeData):
        return ndcg_at_k(enc(probe.queries, "query") @ enc(probe.corpus, "document").T, probe.relevant, k=10)
    if isinstance(probe, ClassificationProbeData):
        train_x, test_x = enc(probe.train_texts, "query"), enc(probe.test_texts, "query")
        return classification_accuracy(train_x, probe.train_labels, test_x, probe.test_labels, settings.seed)
    if isinstance(probe, ClusteringProbeData):
        return clustering_v_measure(enc(probe.texts, "query"), probe.labels, settings.seed)
    if isinstance(probe, SimilarityProbeData):
        return similarity_spearman(enc(probe.left, "query"), enc(probe.right, "query"), probe.scores)
    raise TypeError(f"family '{family.name}' has no probe")


def score_probes(model, families: Mapping[str, TaskFamily], settings: ProbeSettings) -> dict[str, float]:
    """{probe name: primary metric} for every family that has a probe; probe name = family name."""
    previous = model.max_seq_length
    model.max_seq_length = settings.max_seq_length
    try:
        return {
            name: round(score_family_probe(model, fam, settings), 6)
            for name, fam in families.items()
            if fam.probe is not None
        }
    finally:
        model.max_seq_length = previous


def pareto_values(scores: Mapping[str, float], weights: Mapping[str, float], domain: list[str]) -> tuple[float, float]:
    """(domain, general): weighted means over the domain probes and over every other probe."""
    in_domain = {k: v for k, v in scores.items() if k in domain}
    general = {k: v for k, v in scores.items() if k not in domain}
    if not in_domain or not general:
        raise ValueError("a pareto objective needs at least one domain probe and one general probe")
    return objective_value(in_domain, weights), objective_value(general, weights)


def study_values(scores: Mapping[str, float], objective) -> list[float]:
    """What a trial reports to the study: [weighted mean], or [domain, general] for `pareto`."""
    if objective.mode == "pareto":
        return list(pareto_values(scores, objective.weights, objective.domain))
    return [objective_value(scores, objective.weights)]


def objective_value(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Weighted mean of probe scores; probes without a declared weight weigh 1."""
    total = weight_sum = 0.0
    for probe, score in scores.items():
        w = weights.get(probe, 1.0)
        total += w * score
        weight_sum += w
    if weight_sum <= 0:
        raise ValueError("objective weights sum to zero")
    return total / weight_sum
