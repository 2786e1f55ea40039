"""Probe metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soupkit.probes.metrics import (
    classification_hits,
    clustering_v_measure,
    ndcg_at_k,
    ndcg_per_query,
    paired_bootstrap,
    similarity_spearman,
)
from soupkit.probes.probe_types import ClassificationProbeData
from soupkit.probes.score import objective_value


def test_ndcg_perfect_and_second_place():
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1]])
    # query 0: relevant doc 0 ranked first -> 1; query 1: relevant doc 1 ranked second -> 1/log2(3)
    assert ndcg_at_k(sim, [{0}, {1}], k=10) == pytest.approx((1 + 1 / math.log2(3)) / 2)


def test_ndcg_per_query_is_what_the_mean_averages():
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1]])
    assert ndcg_per_query(sim, [{0}, {1}]).tolist() == pytest.approx([1.0, 1 / math.log2(3)])


def test_paired_bootstrap_interval():
    a = np.array([0.5, 0.2, 0.9, 0.4])
    # the same difference on every item: no spread at all
    assert paired_bootstrap(a, a + 0.1) == pytest.approx((0.1, 0.1, 0.1))
    # one item of four gains 1: mean 0.25, and a resample can miss it (0) or draw it four times (1)
    mean, low, high = paired_bootstrap(np.zeros(4), np.array([0.0, 0.0, 0.0, 1.0]), seed=3)
    assert mean == 0.25 and low == 0.0 and 0.5 <= high <= 0.75
    with pytest.raises(ValueError):
        paired_bootstrap(np.zeros(0), np.zeros(0))


def test_paired_bootstrap_gives_the_numbers_of_a_plain_resampling():
    """scipy.stats.bootstrap (percentile) draws the same resamples as indexing with
    `default_rng(seed).integers(0, n, (resamples, n))`, and takes the same percentiles."""
    rng = np.random.default_rng(1)
    a, b = rng.random(57), rng.random(57)
    diff = b - a
    means = diff[np.random.default_rng(7).integers(0, len(diff), size=(2000, len(diff)))].mean(axis=1)
    by_hand = (diff.mean(), *np.percentile(means, [2.5, 97.5]))
    assert paired_bootstrap(a, b, resamples=2000, seed=7) == pytest.approx(by_hand, rel=1e-12, abs=1e-15)


def test_ndcg_two_relevant_and_cutoff():
    sim = np.array([[0.9, 0.8, 0.7, 0.6]])
    # relevant {1, 3}: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(sim, [{1, 3}], k=10) == pytest.approx(expected)
    assert ndcg_at_k(sim, [{3}], k=2) == 0.0


def test_classification_and_clustering_on_separable_points():
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    probe = ClassificationProbeData(["p", "q", "r", "s"], ["a", "a", "b", "b"], ["p", "q", "r", "s"], ["a", "a", "b", "a"])
    assert probe.score([x, x], seed=0) == 0.75 and probe.per_item([x, x], seed=0).tolist() == [1.0, 1.0, 1.0, 0.0]
    assert classification_hits(x, ["a", "a", "b", "b"], x, ["a", "a", "b", "a"]).tolist() == [1.0, 1.0, 1.0, 0.0]
    assert clustering_v_measure(x, ["a", "a", "b", "b"]) == pytest.approx(1.0)


def test_spearman_of_cosines():
    left = np.array([[1, 0], [1, 0], [1, 0]], dtype=np.float32)
    right = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    assert similarity_spearman(left, right, [3.0, 2.0, 1.0]) == pytest.approx(1.0)
    assert similarity_spearman(left, right, [1.0, 2.0, 3.0]) == pytest.approx(-1.0)


def test_objective_is_weighted_mean_with_default_weight_one():
    scores = {"a": 0.5, "b": 1.0, "c": 0.0}
    assert objective_value(scores, {}) == pytest.approx(0.5)
    assert objective_value(scores, {"a": 2, "c": 0}) == pytest.approx((2 * 0.5 + 1.0) / 3)


def test_per_item_scores_average_to_the_probe_score(tiny_model_dir):
    from soupkit.base_model import load_model
    from soupkit.data.registry import BuildOptions
    from soupkit.data.load import _registry
    from soupkit.probes.score import ProbeSettings, per_item_scores, score_probes

    model = load_model(str(tiny_model_dir), "cpu")
    settings = ProbeSettings(max_seq_length=32)
    options = BuildOptions(probe_size=25, probe_corpus=50, max_train=100)
    for family in (_registry().get(name).build(options) for name in ("medical-abbreviations", "topic-classification")):
        items = per_item_scores(model, family, settings)
        assert len(items) == 25
        assert items.mean() == pytest.approx(score_probes(model, {family.name: family}, settings)[family.name], abs=1e-6)


def test_clustering_v_measure_averages_runs_so_the_kmeans_seed_barely_moves_it():
    # overlapping clusters: one k-means run lands in a different local optimum for each seed
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 16))
    x = np.vstack([c + rng.normal(scale=1.0, size=(15, 16)) for c in centres]).astype(np.float32)
    labels = [str(i) for i in range(10) for _ in range(15)]
    single = [clustering_v_measure(x, labels, seed, runs=1) for seed in range(8)]
    averaged = [clustering_v_measure(x, labels, seed) for seed in range(8)]
    assert np.std(averaged) < np.std(single) / 2
    assert clustering_v_measure(x, labels, 3) == clustering_v_measure(x, labels, 3)  # seeded: reproducible
