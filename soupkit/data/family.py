"""What a task family is: a named real data source, a task type, training examples and a probe.

Families describe data only; how much of each is used lives in a Mixture (soupkit.config).
"""

from __future__ import annotations

from dataclasses import dataclass

from soupkit.config import TaskType
from soupkit.probes.probe_types import (  # noqa: F401  (the probe types a family's source builds)
    ClassificationProbeData,
    ClusteringProbeData,
    ProbeData,
    RetrievalProbeData,
    SimilarityProbeData,
)

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
class TaskFamily:
    """A family ready to train on and probe. `train` and `probe` are disjoint by construction."""

    name: str
    task: TaskType
    source: str
    train: list[TrainExample]
    probe: ProbeData | None
    description: str = ""

    @property
    def metric(self) -> str | None:
        return self.probe.metric if self.probe is not None else None
