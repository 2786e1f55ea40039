"""Minimum sizes: a family too small to train on or to probe fails before any training.

A probe of 0 queries scores 0.0 and a family of 2 rows trains on the same pair over and over; a
search on either runs to its budget and means nothing. Built-in families fail with the command
that restores their source; the user's own files with how many rows they need.
"""

from __future__ import annotations

from soupkit.data.family import (
    ClassificationProbeData,
    ClusteringProbeData,
    RetrievalProbeData,
    SimilarityProbeData,
    TaskFamily,
)
from soupkit.errors import SoupkitError

# the user's own files: small is fine, empty or one-sided is not
LOCAL_MIN_TRAIN = 10
LOCAL_MIN_PROBE = 10


def probe_size(family: TaskFamily) -> tuple[int, str]:
    """How many items the probe scores, and what they are."""
    probe = family.probe
    if isinstance(probe, RetrievalProbeData):
        return len(probe.queries), "queries"
    if isinstance(probe, ClassificationProbeData):
        both = len(set(probe.train_labels)) >= 2 and len(probe.train_texts) > 0
        return (len(probe.test_texts) if both else 0), "test texts"
    if isinstance(probe, ClusteringProbeData):
        return (len(probe.texts) if len(set(probe.labels)) >= 2 else 0), "texts"
    if isinstance(probe, SimilarityProbeData):
        return len(probe.scores), "pairs"
    return 0, "items"


def check_family_size(family: TaskFamily, min_train: int, min_probe: int, remedy: str, probe_only: bool) -> None:
    """Raise one line when the family's training side or its probe is below its minimum."""
    probed, unit = probe_size(family)
    train = len(family.train)
    if (probe_only or train >= min_train) and probed >= min_probe:
        return
    needs = f"at least {min_probe} probe {unit}" if probe_only else f"at least {min_train} and {min_probe}"
    has = f"a probe of {probed} {unit}" if probe_only else f"{train} training examples and a probe of {probed} {unit}"
    raise SoupkitError(f"family '{family.name}' is too small to use: {has} (needs {needs}); {remedy}")
