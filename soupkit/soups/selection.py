"""Which mixtures become ingredients: good ones, and different from each other.

A search's best trials crowd around one optimum (the GP samples where it expects the best), so
the top K mixtures are often near-copies and their soup is little more than one of them. The
diverse choice is greedy max-min (farthest-point) selection within a pool of good trials: start
from the best, then repeatedly add the pool member farthest from everything chosen so far.
Distances are total variation on the simplex (half the L1 distance): the share of training
batches two mixtures would draw from different families, 0 for the same mixture, 1 for mixtures
with no family in common.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Candidate", "choose_diverse", "choose_top", "distance_matrix", "simplex_distance"]


@dataclass(frozen=True)
class Candidate:
    """A mixture the search tried: its trial number and normalised weights, best first in a pool."""

    trial: int
    mixture: Mapping[str, float]


def simplex_distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Total variation distance between two mixtures (each normalised first; absent families weigh 0)."""
    sa, sb = sum(a.values()), sum(b.values())
    families = set(a) | set(b)
    return 0.5 * sum(abs(a.get(f, 0.0) / sa - b.get(f, 0.0) / sb) for f in families)


def distance_matrix(mixtures: Sequence[Mapping[str, float]]) -> list[list[float]]:
    return [[simplex_distance(a, b) for b in mixtures] for a in mixtures]


def choose_top(pool: Sequence[Candidate], k: int) -> list[Candidate]:
    """The first k of a pool ranked best first."""
    return list(pool[:k])


def choose_diverse(pool: Sequence[Candidate], k: int) -> list[Candidate]:
    """Greedy max-min: the best candidate, then each time the one whose nearest chosen mixture is
    farthest (ties go to the better-ranked). Deterministic, and a prefix of the choice for a larger k."""
    if not pool:
        return []
    chosen = [pool[0]]
    nearest = [simplex_distance(c.mixture, pool[0].mixture) for c in pool]
    while len(chosen) < min(k, len(pool)):
        taken = {c.trial for c in chosen}
        index = max((i for i, c in enumerate(pool) if c.trial not in taken), key=lambda i: (nearest[i], -i))
        chosen.append(pool[index])
        nearest = [min(d, simplex_distance(c.mixture, pool[index].mixture)) for d, c in zip(nearest, pool)]
    return chosen
