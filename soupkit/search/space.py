"""The mixture search space: weights on the simplex as Optuna parameters.

Each family gets x_f ~ U(1e-6, 1]; weights are -log(x_f) normalised, which makes uniform random
draws a flat Dirichlet (the paper's random seeding) while the GP sees a plain box. A hand-made
mixture maps back exactly: x_f = exp(-w_f) gives -log(x_f) = w_f.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

PARAM_PREFIX = "x_"
LOW = 1e-6


def suggest_mixture(trial, families: Sequence[str]) -> dict[str, float]:
    raw = {f: -math.log(trial.suggest_float(PARAM_PREFIX + f, LOW, 1.0)) for f in families}
    return normalise(raw)


def normalise(raw: Mapping[str, float]) -> dict[str, float]:
    total = sum(raw.values())
    if total <= 0:
        return {f: 1.0 / len(raw) for f in raw}
    return {f: v / total for f, v in raw.items()}


def params_for_mixture(weights: Mapping[str, float], families: Sequence[str]) -> dict[str, float]:
    """Optuna params that `suggest_mixture` turns back into `weights` (families absent weigh 0)."""
    total = sum(weights.values())
    return {PARAM_PREFIX + f: max(LOW, math.exp(-weights.get(f, 0.0) / total)) for f in families}
