"""The merge-method registry: each method's function and its needs. The streaming soups are one
file each (uniform.py, weighted.py); the mergekit methods are one table in mergekit_backend.py.

A method receives a checked MergeJob and writes the merged model folder into `job.destination`
(a staging folder); `merge_models` validates the base and weights against the declared needs
before any method runs, and writes the model card and merge record afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from soupkit.model_folder import ModelFolder
from soupkit.registry import Registry

# required: --base must be given; optional: the method picks one when absent; ignored: refused.
BasePolicy = Literal["required", "optional", "ignored"]
# normalised: weights are relative shares ([2, 2] == [1, 1]); scaled: each weight scales that
# input's task vector (mergekit's meaning); none: the method takes no weights.
WeightsPolicy = Literal["normalised", "scaled", "none"]
Backend = Literal["streaming", "sentence-transformers"]


@dataclass
class MergeJob:
    inputs: list[ModelFolder]
    destination: Path
    base: ModelFolder | None = None
    base_index: int | None = None  # position of the base among the inputs, None when separate
    weights: list[float] | None = None  # as given, one per input (per non-base input with a base)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MergeMethod:
    name: str
    summary: str
    run: Callable[[MergeJob], list[str]]  # returns files left out of the output, with reasons
    backend: Backend
    base: BasePolicy = "ignored"
    weights: WeightsPolicy = "none"
    needs_weights: bool = False
    min_models: int = 2  # inputs plus a separate base
    max_models: int | None = None
    parameters: tuple[str, ...] = ()  # the method's own parameters, for help and docs


METHODS: Registry[MergeMethod] = Registry("merge method")


def merge_method(name: str, *, summary: str, backend: Backend, **needs: Any):
    """Register `run(job) -> left_out` as a merge method; `needs` are MergeMethod fields."""

    def decorator(run: Callable[[MergeJob], list[str]]) -> Callable[[MergeJob], list[str]]:
        METHODS.add(name, MergeMethod(name=name, summary=summary, run=run, backend=backend, **needs))
        return run

    return decorator


def normalised(weights: list[float]) -> list[float]:
    total = sum(weights)
    return [w / total for w in weights]
