"""The probe types: one class each, knowing its texts, its metric and its per-item scores.

The sentence-transformers evaluator idea (STYLE.md 6): a probe holds its data, says which texts
to encode (and as query or document), and turns their embeddings into its primary metric. A new
probe type is one class here with the members of `Probe` (`text_columns`, `score`, `per_item`,
`sizes`, `subset`, `metric`, `itemwise`); `soupkit.probes.score` and the families need no change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol, Union

import numpy as np

from soupkit.probes.metrics import (
    classification_hits,
    clustering_v_measure,
    ndcg_at_k,
    ndcg_per_query,
    similarity_spearman,
)

Role = str  # "query" or "document": which of the model's prompts encodes the texts


class Probe(Protocol):
    metric: ClassVar[str]  # the primary metric's name, e.g. "ndcg@10"; greater is better for all
    itemwise: ClassVar[bool]  # whether the metric is a mean over items (`per_item` gives them)

    def text_columns(self) -> list[tuple[list[str], Role]]:
        """The text columns to encode, in the order `score` receives their embeddings."""

    def score(self, arrays: list[np.ndarray], seed: int) -> float:
        """The primary metric on the embeddings of `text_columns()` (unit vectors)."""

    def per_item(self, arrays: list[np.ndarray], seed: int) -> np.ndarray | None:
        """Each item's score, whose mean is `score` (for paired intervals); None for a probe that
        scores a set as a whole."""

    def sizes(self) -> str:
        """How big it is, in words."""

    def subset(self, fraction: float, seed: int) -> Probe:
        """The same probe on a random `fraction` of its items (a cheaper, noisier score: what a
        search's milestones use, `search.milestone_fraction`); the same seed gives the same items."""


def _pick(n: int, fraction: float, rng: np.random.Generator, least: int = 2) -> list[int]:
    """Sorted indexes of ceil(fraction * n) of n items drawn at random (at least `least`, at most n)."""
    k = min(n, max(least, math.ceil(fraction * n)))
    return sorted(rng.choice(n, size=k, replace=False).tolist())


@dataclass
class RetrievalProbeData:
    """Queries against a corpus; `relevant[i]` holds the corpus indexes relevant to query i."""

    queries: list[str]
    corpus: list[str]
    relevant: list[set[int]]

    metric: ClassVar[str] = "ndcg@10"
    itemwise: ClassVar[bool] = True

    def text_columns(self) -> list[tuple[list[str], Role]]:
        return [(self.queries, "query"), (self.corpus, "document")]

    def score(self, arrays: list[np.ndarray], seed: int) -> float:
        queries, corpus = arrays
        return ndcg_at_k(queries @ corpus.T, self.relevant, k=10)

    def per_item(self, arrays: list[np.ndarray], seed: int) -> np.ndarray:
        queries, corpus = arrays
        return ndcg_per_query(queries @ corpus.T, self.relevant, k=10)

    def sizes(self) -> str:
        return f"{len(self.queries)} queries / {len(self.corpus)} docs"

    def subset(self, fraction: float, seed: int) -> RetrievalProbeData:
        """A fraction of the queries against a corpus of the same fraction of the documents: their
        relevant ones, filled up with others drawn at random (distractors)."""
        rng = np.random.default_rng(seed)
        queries = _pick(len(self.queries), fraction, rng)
        relevant = set().union(*(self.relevant[q] for q in queries))
        others = [d for d in range(len(self.corpus)) if d not in relevant]
        room = max(0, math.ceil(fraction * len(self.corpus)) - len(relevant))
        distractors = rng.choice(others, size=min(room, len(others)), replace=False).tolist() if others else []
        docs = sorted(relevant | set(distractors))
        new_index = {d: i for i, d in enumerate(docs)}
        return RetrievalProbeData([self.queries[q] for q in queries], [self.corpus[d] for d in docs],
                                  [{new_index[d] for d in self.relevant[q]} for q in queries])


@dataclass
class ClassificationProbeData:
    """Embeddings of the train texts fit a simple classifier that labels the test texts."""

    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]

    metric: ClassVar[str] = "accuracy"
    itemwise: ClassVar[bool] = True

    def text_columns(self) -> list[tuple[list[str], Role]]:
        return [(self.train_texts, "query"), (self.test_texts, "query")]

    def score(self, arrays: list[np.ndarray], seed: int) -> float:
        return float(self.per_item(arrays, seed).mean())

    def per_item(self, arrays: list[np.ndarray], seed: int) -> np.ndarray:
        train_x, test_x = arrays
        return classification_hits(train_x, self.train_labels, test_x, self.test_labels, seed)

    def sizes(self) -> str:
        n_classes = len(set(self.train_labels) | set(self.test_labels))
        return f"{len(self.train_texts)}+{len(self.test_texts)} texts / {n_classes} classes"

    def subset(self, fraction: float, seed: int) -> ClassificationProbeData:
        """All the train texts fit the classifier (they set how good it can be: a quarter of them
        leaves one example per class on the topic probe), a fraction of the test texts scores it."""
        test = _pick(len(self.test_texts), fraction, np.random.default_rng(seed))
        return ClassificationProbeData(self.train_texts, self.train_labels,
                                       [self.test_texts[i] for i in test], [self.test_labels[i] for i in test])


@dataclass
class ClusteringProbeData:
    """k-means on the embeddings against the true labels (V-measure)."""

    texts: list[str]
    labels: list[str]

    metric: ClassVar[str] = "v_measure"
    itemwise: ClassVar[bool] = False

    def text_columns(self) -> list[tuple[list[str], Role]]:
        return [(self.texts, "query")]

    def score(self, arrays: list[np.ndarray], seed: int) -> float:
        return clustering_v_measure(arrays[0], self.labels, seed)

    def per_item(self, arrays: list[np.ndarray], seed: int) -> None:
        return None

    def sizes(self) -> str:
        return f"{len(self.texts)} texts / {len(set(self.labels))} clusters"

    def subset(self, fraction: float, seed: int) -> ClusteringProbeData:
        keep = _pick(len(self.texts), fraction, np.random.default_rng(seed))
        return ClusteringProbeData([self.texts[i] for i in keep], [self.labels[i] for i in keep])


@dataclass
class SimilarityProbeData:
    """Sentence pairs with human similarity scores (Spearman of cosine vs score)."""

    left: list[str]
    right: list[str]
    scores: list[float]

    metric: ClassVar[str] = "spearman"
    itemwise: ClassVar[bool] = False

    def text_columns(self) -> list[tuple[list[str], Role]]:
        return [(self.left, "query"), (self.right, "query")]

    def score(self, arrays: list[np.ndarray], seed: int) -> float:
        return similarity_spearman(arrays[0], arrays[1], self.scores)

    def per_item(self, arrays: list[np.ndarray], seed: int) -> None:
        return None

    def sizes(self) -> str:
        return f"{len(self.scores)} pairs"

    def subset(self, fraction: float, seed: int) -> SimilarityProbeData:
        keep = _pick(len(self.scores), fraction, np.random.default_rng(seed), least=3)
        return SimilarityProbeData([self.left[i] for i in keep], [self.right[i] for i in keep],
                                   [self.scores[i] for i in keep])


ProbeData = Union[RetrievalProbeData, ClassificationProbeData, ClusteringProbeData, SimilarityProbeData]
