"""Probe metrics on plain arrays, so tests can check them with values worked out by hand."""

from __future__ import annotations

import numpy as np


def ndcg_at_k(similarity: np.ndarray, relevant: list[set[int]], k: int = 10) -> float:
    """Mean nDCG@k with binary relevance; `similarity` is [queries, corpus]."""
    if len(relevant) == 0:
        return 0.0
    k = min(k, similarity.shape[1])
    # stable tie-break by corpus index keeps the metric deterministic
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for row, rel in zip(top, relevant):
        gains = np.array([1.0 if doc in rel else 0.0 for doc in row])
        ideal = discounts[: min(len(rel), k)].sum()
        total += float((gains * discounts).sum() / ideal) if ideal > 0 else 0.0
    return total / len(relevant)


def classification_accuracy(
    train_x: np.ndarray, train_y: list[str], test_x: np.ndarray, test_y: list[str], seed: int = 0
) -> float:
    """Accuracy of a logistic-regression probe (as MTEB's classification tasks) on embeddings."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=300, random_state=seed)
    clf.fit(train_x, train_y)
    return float((clf.predict(test_x) == np.asarray(test_y)).mean())


def clustering_v_measure(x: np.ndarray, labels: list[str], seed: int = 0) -> float:
    """V-measure of k-means (k = number of true labels) against the labels."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    k = len(set(labels))
    pred = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x)
    return float(v_measure_score(labels, pred))


def similarity_spearman(left: np.ndarray, right: np.ndarray, scores: list[float]) -> float:
    from scipy.stats import spearmanr

    cosine = (left * right).sum(axis=1)
    return float(spearmanr(cosine, scores).statistic)
