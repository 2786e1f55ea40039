"""What a task family is: a named real data source, a task type, training examples and a probe.

Families describe data only; how much of each is used lives in a Mixture (soupkit.config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

TaskType = Literal["retrieval", "code", "classification", "clustering", "similarity", "paraphrase", "bitext"]
TASK_TYPES: tuple[str, ...] = TaskType.__args__  # type: ignore[attr-defined]

# Tasks whose two sides play different roles (query vs document); the others are symmetric.
ASYMMETRIC_TASKS = frozenset({"retrieval", "code"})


@dataclass(frozen=True)
class TrainExample:
    """One contrastive example. Examples sharing a `group` never meet in one batch, because
    each would be the other's false negative (same label, same target document)."""

    anchor: str
    positive: str
    negative: str | None = None
    group: str | None = None


@dataclass
class RetrievalProbeData:
    """Queries against a corpus; `relevant[i]` holds the corpus indexes relevant to query i."""

    queries: list[str]
    corpus: list[str]
    relevant: list[set[int]]

    def sizes(self) -> str:
        return f"{len(self.queries)} queries / {len(self.corpus)} docs"


@dataclass
class ClassificationProbeData:
    """Embeddings of the train texts fit a simple classifier that labels the test texts."""

    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]

    def sizes(self) -> str:
        n_classes = len(set(self.train_labels) | set(self.test_labels))
        return f"{len(self.train_texts)}+{len(self.test_texts)} texts / {n_classes} classes"


@dataclass
class ClusteringProbeData:
    texts: list[str]
    labels: list[str]

    def sizes(self) -> str:
        return f"{len(self.texts)} texts / {len(set(self.labels))} clusters"


@dataclass
class SimilarityProbeData:
    """Sentence pairs with human similarity scores (Spearman of cosine vs score)."""

    left: list[str]
    right: list[str]
    scores: list[float]

    def sizes(self) -> str:
        return f"{len(self.scores)} pairs"


ProbeData = Union[RetrievalProbeData, ClassificationProbeData, ClusteringProbeData, SimilarityProbeData]

PROBE_METRIC: dict[type, str] = {
    RetrievalProbeData: "ndcg@10",
    ClassificationProbeData: "accuracy",
    ClusteringProbeData: "v_measure",
    SimilarityProbeData: "spearman",
}


@dataclass
class TaskFamily:
    """A family ready to train on and probe. `train` and `probe` are disjoint by construction."""

    name: str
    task: TaskType
    source: str
    train: list[TrainExample]
    probe: ProbeData | None
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def metric(self) -> str | None:
        return PROBE_METRIC[type(self.probe)] if self.probe is not None else None
