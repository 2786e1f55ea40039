"""Mixture -> a fixed, seeded schedule of single-family batches.

Steps are shared out among families in proportion to the mixture (largest remainder, so the
counts are exact and add up to the budget), then interleaved in a seeded order drawn one step at a
time, so the plan is lazy: memory does not grow with the number of steps. Inside a family,
examples are drawn from a seeded permutation, skipping any whose group is already in the batch
(a false negative). The same seed and mixture always give the same batches.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from soupkit.data.family import TaskFamily, TrainExample


@dataclass(frozen=True)
class Batch:
    family: str
    examples: list[TrainExample]


def steps_per_family(weights: Mapping[str, float], steps: int) -> dict[str, int]:
    """Largest-remainder allocation of `steps` to families by normalised weight."""
    total = sum(weights.values())
    exact = {name: steps * w / total for name, w in weights.items()}
    counts = {name: math.floor(x) for name, x in exact.items()}
    left = steps - sum(counts.values())
    by_remainder = sorted(exact, key=lambda n: (-(exact[n] - counts[n]), n))
    for name in by_remainder[:left]:
        counts[name] += 1
    return counts


class _FamilyStream:
    """Endless seeded pass over one family's examples, reshuffled each epoch."""

    def __init__(self, examples: list[TrainExample], rng: random.Random):
        self.examples, self.rng, self.order, self.pos = examples, rng, [], 0

    def next_batch(self, size: int) -> list[TrainExample]:
        batch: list[TrainExample] = []
        groups: set[str] = set()
        tries = 0
        while len(batch) < size and tries < 4 * size + len(self.examples):
            tries += 1
            if self.pos >= len(self.order):
                self.order = list(range(len(self.examples)))
                self.rng.shuffle(self.order)
                self.pos = 0
            ex = self.examples[self.order[self.pos]]
            self.pos += 1
            key = ex.group if ex.group is not None else ex.positive
            if key in groups:
                continue
            groups.add(key)
            batch.append(ex)
        return batch


def plan_batches(
    families: Mapping[str, TaskFamily], weights: Mapping[str, float], steps: int, batch_size: int, seed: int
) -> Iterator[Batch]:
    """The batches, one per step, produced as they are consumed. Each step's family is drawn with
    probability (its steps left) / (all steps left): a seeded uniformly random interleaving of
    the exact counts, held as one counter per family instead of a list of `steps` names."""
    counts = steps_per_family({n: w for n, w in weights.items() if w > 0}, steps)
    rng = random.Random(seed)
    streams = {
        name: _FamilyStream(families[name].train, random.Random(f"{seed}:{name}")) for name in sorted(counts)
    }
    left = dict(sorted(counts.items()))
    total = sum(left.values())
    while total > 0:
        pick = rng.randrange(total)
        for name, n in left.items():
            if pick < n:
                break
            pick -= n
        left[name] -= 1
        total -= 1
        yield Batch(name, streams[name].next_batch(batch_size))
