"""The built-in family registry: name -> how to build it, where its data comes from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from soupkit.data.family import TaskFamily, TaskType
from soupkit.registry import Registry


@dataclass(frozen=True)
class BuildOptions:
    """Sizes every family honours. Probes stay small enough to score in seconds on a CPU."""

    seed: int = 0
    probe_size: int = 200
    probe_corpus: int = 400
    max_train: int = 20_000
    # share of a retrieval source's documents its probe may take; a probe-only family trains on
    # nothing, so it may take all of them
    probe_share: float = 1 / 3


@dataclass(frozen=True)
class FamilyInfo:
    name: str
    task: TaskType
    source: str
    install: str
    description: str
    build: Callable[[BuildOptions], TaskFamily]


FAMILIES: Registry[FamilyInfo] = Registry("family")


def builtin_family(name: str, *, task: TaskType, source: str, install: str, description: str):
    """Register a builder `build(options) -> TaskFamily` as a built-in family."""

    def decorator(build: Callable[[BuildOptions], TaskFamily]) -> Callable[[BuildOptions], TaskFamily]:
        FAMILIES.add(name, FamilyInfo(name, task, source, install, description, build))
        return build

    return decorator
