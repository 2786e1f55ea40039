"""Every probe split in two: a selection half and a test half.

A probe that steers a choice (the search's objective, which trials become soup ingredients, the
greedy soup, the base share, adapt's proposals) stops being an unbiased test of that choice. So
each probe, of a trained family and of a held-out (probe-only) family alike, is split once, by a
seeded hash of its items, into a *selection* half that the search and the soups score, and a
*test* half that only the verdict reads (`soupkit eval --split test`,
`soupkit.data.load.load_test_probes`). Both halves keep the family's name, so recipes, objective
weights and reports name them as before.

Studies record which scheme scored them (`SPLIT_SCHEMES`): studies made before trained families
were halved scored those on their whole probe, and keep doing so when resumed.

The unit of the split is the scored item: a retrieval query (its relevant documents go with it;
distractor documents are split too), a labelled text (the texts that fit the classifier and the
texts it labels are each halved), a clustering text, a similarity pair. A retrieval document
relevant to queries of both halves appears in both corpora.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from soupkit.data.family import (
    ClassificationProbeData,
    ClusteringProbeData,
    ProbeData,
    RetrievalProbeData,
    SimilarityProbeData,
    TaskFamily,
)
from soupkit.data.split import stable_key

# what a study's probe scores were scored on, recorded in the study (soupkit.study_record)
HELD_OUT_HALVED = "selection half"  # older studies: held-out probes halved, trained families' probes whole
EVERY_PROBE_HALVED = "selection half of every probe"  # trained families' probes halved too (the default)
SPLIT_SCHEMES = (HELD_OUT_HALVED, EVERY_PROBE_HALVED)

HALF = "held-out-half"  # salt: the halves do not follow the order the family's own split used

P = TypeVar("P", bound=ProbeData)


def _selection_indexes(keys: list[str], seed: int) -> set[int]:
    """The indexes of the selection half: the first ceil(n/2) items in a seeded hash order."""
    order = sorted(range(len(keys)), key=lambda i: (stable_key(seed, f"{HALF}\x00{keys[i]}"), i))
    return set(order[: (len(keys) + 1) // 2])


def split_probe(probe: P, seed: int) -> tuple[P, P]:
    """(selection half, test half) of a probe; the same seed gives the same halves everywhere."""
    if isinstance(probe, RetrievalProbeData):
        return _split_retrieval(probe, seed)  # type: ignore[return-value]
    if isinstance(probe, ClassificationProbeData):
        fit = _selection_indexes(probe.train_texts, seed)
        scored = _selection_indexes(probe.test_texts, seed)
        halves = []
        for keep in (True, False):
            f = [i for i in range(len(probe.train_texts)) if (i in fit) == keep]
            s = [i for i in range(len(probe.test_texts)) if (i in scored) == keep]
            halves.append(ClassificationProbeData(
                train_texts=[probe.train_texts[i] for i in f], train_labels=[probe.train_labels[i] for i in f],
                test_texts=[probe.test_texts[i] for i in s], test_labels=[probe.test_labels[i] for i in s],
            ))
        return halves[0], halves[1]  # type: ignore[return-value]
    if isinstance(probe, ClusteringProbeData):
        chosen = _selection_indexes(probe.texts, seed)
        halves = [
            ClusteringProbeData(texts=[t for i, t in enumerate(probe.texts) if (i in chosen) == keep],
                                labels=[x for i, x in enumerate(probe.labels) if (i in chosen) == keep])
            for keep in (True, False)
        ]
        return halves[0], halves[1]  # type: ignore[return-value]
    if isinstance(probe, SimilarityProbeData):
        chosen = _selection_indexes([f"{a}\x00{b}" for a, b in zip(probe.left, probe.right)], seed)
        halves = []
        for keep in (True, False):
            idx = [i for i in range(len(probe.scores)) if (i in chosen) == keep]
            halves.append(SimilarityProbeData(left=[probe.left[i] for i in idx], right=[probe.right[i] for i in idx],
                                              scores=[probe.scores[i] for i in idx]))
        return halves[0], halves[1]  # type: ignore[return-value]
    raise TypeError(f"cannot split a probe of type {type(probe).__name__}")


def _split_retrieval(probe: RetrievalProbeData, seed: int) -> tuple[RetrievalProbeData, RetrievalProbeData]:
    chosen = _selection_indexes(probe.queries, seed)
    relevant_anywhere = set().union(*probe.relevant) if probe.relevant else set()
    distractors = [d for d in range(len(probe.corpus)) if d not in relevant_anywhere]
    chosen_distractors = {distractors[i] for i in _selection_indexes([probe.corpus[d] for d in distractors], seed)}
    halves = []
    for keep in (True, False):
        queries = [q for q in range(len(probe.queries)) if (q in chosen) == keep]
        docs = sorted(
            {d for q in queries for d in probe.relevant[q]}
            | {d for d in distractors if (d in chosen_distractors) == keep}
        )
        new_index = {d: i for i, d in enumerate(docs)}
        halves.append(RetrievalProbeData(
            queries=[probe.queries[q] for q in queries],
            corpus=[probe.corpus[d] for d in docs],
            relevant=[{new_index[d] for d in probe.relevant[q]} for q in queries],
        ))
    return halves[0], halves[1]


def selection_half(family: TaskFamily, seed: int) -> TaskFamily:
    """The family with only the selection half of its probe: what search and soups may score."""
    return _half(family, seed, 0)


def test_half(family: TaskFamily, seed: int) -> TaskFamily:
    """The family with only the test half of its probe: for the final report alone."""
    return _half(family, seed, 1)


test_half.__test__ = False  # type: ignore[attr-defined]  (not a pytest test, despite its name)


def trained_probe(family: TaskFamily, seed: int, scheme: str = EVERY_PROBE_HALVED) -> TaskFamily:
    """What a search or a soup scores of a trained family: its selection half, or its whole probe
    for a study scored before trained families were halved (`HELD_OUT_HALVED`)."""
    if scheme not in SPLIT_SCHEMES:
        raise ValueError(f"unknown probe split scheme {scheme!r}")
    return family if scheme == HELD_OUT_HALVED or family.probe is None else selection_half(family, seed)


def _half(family: TaskFamily, seed: int, which: int) -> TaskFamily:
    if family.probe is None:
        raise TypeError(f"family '{family.name}' has no probe to split")
    probe = split_probe(family.probe, seed)[which]
    return replace(family, train=[], probe=probe)
