"""The built-in family registry: name -> how to build it, where its data comes from.

A family's name, task type and source are written once, in its `@builtin_family(...)` line; its
builder returns only what it makes (training examples and a probe), and the registry makes the
TaskFamily of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from soupkit.config import ProbeSpec, TaskType
from soupkit.data.family import ProbeData, TaskFamily, TrainExample
from soupkit.registry import Registry

FamilyData = tuple[list[TrainExample], ProbeData | None]  # what a builder returns: (train, probe)


@dataclass(frozen=True)
class BuildOptions:
    """Sizes every family honours. Probes stay small enough to score in seconds on a CPU."""

    seed: int = 0
    probe_size: int = ProbeSpec.model_fields["probe_size"].default  # the recipe's defaults: one place
    probe_corpus: int = ProbeSpec.model_fields["probe_corpus"].default
    max_train: int = ProbeSpec.model_fields["max_train"].default
    # share of a retrieval source's documents its probe may take; a probe-only family trains on
    # nothing, so it may take all of them
    probe_share: float = 1 / 3
    # "neighbours": a retrieval probe built of whole neighbourhoods (a chapter, a module) where its
    # source knows them, so answers compete with near misses; "random": random distractors
    probe_distractors: str = ProbeSpec.model_fields["distractors"].default


# Below these sizes a built-in family's source is damaged or missing parts (apt's deleted
# Translation-en lists left general-retrieval with 2 training rows and a 0-query probe): the
# smallest healthy family trains on 267 examples and probes 71 queries (`soupkit families`).
MIN_TRAIN = 100
MIN_PROBE = 50


@dataclass(frozen=True)
class FamilyInfo:
    name: str
    task: TaskType
    source: str
    install: str
    description: str
    make: Callable[[BuildOptions], FamilyData]
    min_train: int = MIN_TRAIN
    min_probe: int = MIN_PROBE  # probe items (queries, test texts, pairs), or the requested size if smaller

    def build(self, options: BuildOptions) -> TaskFamily:
        train, probe = self.make(options)
        return TaskFamily(self.name, self.task, self.source, train, probe, self.description)

    @property
    def restore(self) -> str:
        """The command that puts a damaged source back."""
        for install, again in (("apt-get install ", "apt-get install --reinstall "),
                               ("pip install ", "pip install --force-reinstall ")):
            if self.install.startswith(install):
                return again + self.install.removeprefix(install)
        return self.install


FAMILIES: Registry[FamilyInfo] = Registry("family")


def builtin_family(name: str, *, task: TaskType, source: str, install: str, description: str,
                   min_train: int = MIN_TRAIN, min_probe: int = MIN_PROBE):
    """Register a builder `build(options) -> TaskFamily` as a built-in family."""

    def decorator(build: Callable[[BuildOptions], TaskFamily]) -> Callable[[BuildOptions], TaskFamily]:
        FAMILIES.add(name, FamilyInfo(name, task, source, install, description, build, min_train, min_probe))
        return build

    return decorator
