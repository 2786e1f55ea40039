"""A probe's subset (`Probe.subset`): what a cheap milestone scores (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from soupkit.probes.probe_types import (
    ClassificationProbeData,
    ClusteringProbeData,
    RetrievalProbeData,
    SimilarityProbeData,
)


def retrieval() -> RetrievalProbeData:
    # query i is answered by document i; documents 10-19 answer nothing
    return RetrievalProbeData([f"q{i}" for i in range(10)], [f"d{i}" for i in range(20)], [{i} for i in range(10)])


def test_a_retrieval_subset_keeps_each_querys_answers_and_a_share_of_the_distractors():
    part = retrieval().subset(0.5, seed=3)

    assert len(part.queries) == 5 and len(part.corpus) == 10  # half the corpus: 5 answers + 5 others
    for query, relevant in zip(part.queries, part.relevant):
        assert [part.corpus[d] for d in relevant] == ["d" + query[1:]]  # indexes follow the new corpus


def test_a_subset_is_the_same_for_the_same_seed_and_another_for_another():
    assert retrieval().subset(0.3, seed=0) == retrieval().subset(0.3, seed=0)
    assert retrieval().subset(0.3, seed=0).queries != retrieval().subset(0.3, seed=1).queries


def test_a_subset_scores_like_its_probe_on_perfect_embeddings():
    part = retrieval().subset(0.4, seed=0)
    # one-hot embeddings: each query equals its answer, distractors point elsewhere
    index = {f"d{i}": i for i in range(20)}
    queries = np.eye(20)[[index["d" + q[1:]] for q in part.queries]]
    corpus = np.eye(20)[[index[d] for d in part.corpus]]
    assert part.score([queries, corpus], seed=0) == 1.0


def test_classification_clustering_and_similarity_subsets_keep_their_pairs_together():
    labels = ["a", "b"] * 10
    texts = [f"{label}{i}" for i, label in enumerate(labels)]
    cls = ClassificationProbeData(texts, labels, texts, labels).subset(0.25, seed=0)
    assert cls.train_texts == texts and len(cls.test_texts) == 5  # the classifier keeps what it learns from
    assert all(t[0] == y for t, y in zip(cls.train_texts + cls.test_texts, cls.train_labels + cls.test_labels))

    clu = ClusteringProbeData(texts, labels).subset(0.5, seed=0)
    assert len(clu.texts) == 10 and all(t[0] == y for t, y in zip(clu.texts, clu.labels))

    sim = SimilarityProbeData([f"l{i}" for i in range(8)], [f"r{i}" for i in range(8)], list(range(8))).subset(0.5, 0)
    assert len(sim.scores) == 4 and [int(x[1:]) for x in sim.left] == [int(x[1:]) for x in sim.right] == sim.scores


@pytest.mark.parametrize("fraction", [0.01, 1.0])
def test_a_subset_holds_at_least_two_items_and_at_most_all(fraction):
    part = retrieval().subset(fraction, seed=0)
    assert len(part.queries) == (2 if fraction < 1 else 10)
