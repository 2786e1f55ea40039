"""Is a soup really better than its ingredients and its base model? Paired bootstrap, probe by probe.

Every model is encoded on the same probe items, so the difference between two models is a
per-item difference (a query's nDCG@10, a test text's hit), resampled to a 95% interval
(soupkit.probes.metrics.paired_bootstrap). A difference whose interval holds zero is noise at
this probe size. Clustering and similarity probes score a set, not items: they get no interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Difference", "differences", "differences_table", "item_scores"]


@dataclass(frozen=True)
class Difference:
    probe: str
    other: str  # the model the soup is compared with
    mean: float  # soup minus other, in the metric's units (0-1)
    low: float
    high: float
    items: int

    def cell(self) -> str:
        """In points: +1.2 [+0.3, +2.0]."""
        return f"{100 * self.mean:+.1f} [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"

    @property
    def beyond_noise(self) -> bool:
        """The whole 95% interval lies on one side of zero: a gain or a loss, not noise."""
        return self.low > 0 or self.high < 0

    @property
    def below(self) -> bool:
        """The soup is worse than `other` beyond this probe's noise (the whole interval below zero)."""
        return self.high < 0


def item_scores(models: Mapping[str, str], families, recipe, device: str | None = None) -> dict[str, dict]:
    """{model label: {probe: per-item scores, or None for set-scored probes}}; `models` maps a
    label to a model folder or reference, each loaded once and dropped before the next. A model
    holding the frozen bottom of the recipe's `train: top:<k>` base encodes on its trunk cache."""
    from soupkit.base_model import load_model, pick_device, use_bf16
    from soupkit.models.trunk import join_trunk_cache
    from soupkit.probes.score import ProbeSettings, per_item_scores

    device = device or pick_device()
    settings = ProbeSettings.from_recipe(recipe, use_bf16(device, recipe.finetune.bf16))
    items = {}
    for label, path in models.items():
        model = load_model(str(path), device)
        join_trunk_cache(model, recipe.finetune.train, recipe.base)
        items[label] = {name: per_item_scores(model, fam, settings) for name, fam in families.items()}
        del model
    return items


def differences(items: Mapping[str, Mapping[str, np.ndarray | None]], soup: str, others: Sequence[str],
                seed: int = 0) -> list[Difference]:
    """The soup against each other model on every probe that has per-item scores."""
    from soupkit.probes.metrics import paired_bootstrap

    found = []
    for probe, soup_items in items[soup].items():
        if soup_items is None:
            continue
        for other in others:
            mean, low, high = paired_bootstrap(items[other][probe], soup_items, seed=seed)
            found.append(Difference(probe, other, mean, low, high, len(soup_items)))
    return found


def differences_table(found: Sequence[Difference], soup: str) -> str:
    """One row per probe, one column per model compared with: the soup's difference, in points."""
    import polars as pl

    from soupkit.report.tables import terminal_table

    probes = list(dict.fromkeys(d.probe for d in found))
    others = list(dict.fromkeys(d.other for d in found))
    cells = {(d.probe, d.other): d.cell() + (" !" if d.below else "") for d in found}
    rows = [{"probe": f"{p} ({next(d.items for d in found if d.probe == p)} items)",
             **{f"{soup} - {o}": cells.get((p, o), "") for o in others}} for p in probes]
    with terminal_table(len(rows), width=250, strings=40):
        return (f"{pl.DataFrame(rows)}\n(points, 95% paired-bootstrap interval over the probe's items; "
                "! = below beyond the noise)")
