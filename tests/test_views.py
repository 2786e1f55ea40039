"""Matryoshka and quantised views of probe embeddings, checked on small arrays by hand."""

from __future__ import annotations

import numpy as np
import pytest

from soupkit.data.family import RetrievalProbeData, TaskFamily
from soupkit.probes.score import ProbeSettings, objective_value, score_family_probe
from soupkit.probes.views import binary, int8, truncate, views_for


def test_truncate_renormalises_the_first_dims():
    (out,) = truncate(2)([np.array([[3.0, 4.0, 12.0]], dtype=np.float32)])
    assert out[0].tolist() == pytest.approx([0.6, 0.8])


def test_int8_codes_keep_the_ranking_and_binary_is_sign():
    x = np.array([[0.9, -0.1], [-0.5, 0.5], [0.1, 0.9]], dtype=np.float32)
    (codes,) = int8([x])
    # per-dimension min/max calibration: dim 0 spans [-0.5, 0.9], dim 1 [-0.1, 0.9];
    # row 0 = (max, min) -> codes (127, -128), then renormalised
    assert codes[0].tolist() == pytest.approx((np.array([127, -128]) / np.hypot(127, 128)).tolist())
    assert np.allclose(np.linalg.norm(codes, axis=1), 1.0)
    (bits,) = binary([x])
    assert (np.sign(bits) == np.array([[1, -1], [-1, 1], [1, 1]])).all()
    assert np.allclose(np.abs(bits), 1 / np.sqrt(2))


def test_int8_view_is_sentence_transformers_codes():
    """The int8 view is `quantize_embeddings(precision="int8")` calibrated on every embedding of
    the probe: per dimension, floor((x - min) / ((max - min) / 255)) - 128, worked out here by hand."""
    queries = np.array([[0.9, -0.1, 0.3], [-0.5, 0.5, 0.3]], dtype=np.float32)
    docs = np.array([[0.1, 0.9, 0.3], [0.2, 0.2, 0.3]], dtype=np.float32)
    stacked = np.concatenate([queries, docs])
    low, high = stacked.min(axis=0), stacked.max(axis=0)
    steps = np.where(high > low, (high - low) / 255, 1)  # a constant dimension: step 1, code -128
    for x, view in zip([queries, docs], int8([queries, docs])):
        codes = np.clip(np.floor((x - low) / steps), 0, 255) - 128
        np.testing.assert_allclose(view, codes / np.linalg.norm(codes, axis=1, keepdims=True), rtol=1e-6)
    assert (np.clip(np.floor((docs - low) / steps), 0, 255) - 128)[:, 2].tolist() == [-128, -128]


def test_views_skip_dims_at_or_above_the_width():
    assert list(views_for([768, 256, 128], ["int8", "binary"], width=384)) == ["256", "128", "int8", "binary"]


class KeywordEncoder:
    """Encodes a text as counts of a fixed keyword list, so retrieval scores are exact."""

    prompts: dict = {}
    max_seq_length = 32
    device = "cpu"
    words = ["heart", "lung", "skin", "bone"]

    def encode(self, texts, **kwargs):
        return np.array([[t.count(w) + 0.01 * i for i, w in enumerate(self.words)] for t in texts], dtype=np.float32)


def test_view_scores_are_reported_and_weigh_zero_unless_targeted():
    probe = RetrievalProbeData(["heart lung", "skin"], ["heart lung doc", "skin doc", "bone doc"], [{0}, {1}])
    family = TaskFamily("organs", "retrieval", "test", [], probe)
    scores = score_family_probe(KeywordEncoder(), family, ProbeSettings(dims=(2,), quantizations=("binary",)))
    assert set(scores) == {"organs", "organs@2", "organs@binary"}
    assert scores["organs"] == 1.0
    assert objective_value(scores, {}) == 1.0
    assert objective_value({"a": 1.0, "a@2": 0.0}, {"a@2": 1.0}) == 0.5
