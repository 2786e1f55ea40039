"""Probe metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soupkit.probes.metrics import classification_accuracy, clustering_v_measure, ndcg_at_k, similarity_spearman
from soupkit.probes.score import objective_value


def test_ndcg_perfect_and_second_place():
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1]])
    # query 0: relevant doc 0 ranked first -> 1; query 1: relevant doc 1 ranked second -> 1/log2(3)
    assert ndcg_at_k(sim, [{0}, {1}], k=10) == pytest.approx((1 + 1 / math.log2(3)) / 2)


def test_ndcg_two_relevant_and_cutoff():
    sim = np.array([[0.9, 0.8, 0.7, 0.6]])
    # relevant {1, 3}: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(sim, [{1, 3}], k=10) == pytest.approx(expected)
    assert ndcg_at_k(sim, [{3}], k=2) == 0.0


def test_classification_and_clustering_on_separable_points():
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    assert classification_accuracy(x, ["a", "a", "b", "b"], x, ["a", "a", "b", "b"]) == 1.0
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
