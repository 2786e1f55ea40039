"""How much does the clustering probe move with the k-means seed alone? The base model's
embeddings of the default recipe's clustering probe, clustered again and again.

    python bench/clustering_noise.py [--seeds 30]

Prints the V-measure's mean and standard deviation over k-means seeds for one k-means fit with
n_init 3 (soupkit's metric before 2026-11-29), 10, 30 and 100 (best inertia of that many starts),
and for soupkit's metric now (the mean of KMEANS_RUNS one-start fits), with its time per call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import v_measure_score

from soupkit.base_model import load_model
from soupkit.config import load_recipe
from soupkit.data.load import load_recipe_families
from soupkit.probes.metrics import KMEANS_RUNS, clustering_v_measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args()
    recipe = load_recipe("default")
    _, probes = load_recipe_families(recipe, None, log=lambda _: None)
    probe = probes["clustering"].probe
    x = load_model(recipe.base, "cpu").encode(probe.texts, normalize_embeddings=True, batch_size=64)
    k = len(set(probe.labels))
    print(f"clustering probe: {len(probe.texts)} texts, {k} clusters; {args.seeds} k-means seeds each\n")
    print("| metric | mean | sd | min | max |")
    print("|---|---|---|---|---|")
    for n_init in (3, 10, 30, 100):
        v = [v_measure_score(probe.labels, KMeans(k, n_init=n_init, random_state=s).fit_predict(x))
             for s in range(args.seeds)]
        print(f"| one fit, n_init={n_init} | {np.mean(v):.4f} | {np.std(v):.4f} | {min(v):.4f} | {max(v):.4f} |")
    start = time.perf_counter()
    v = [clustering_v_measure(x, probe.labels, 1000 + s) for s in range(args.seeds)]
    per_call = (time.perf_counter() - start) / args.seeds
    print(f"| mean of {KMEANS_RUNS} one-start fits (soupkit) | {np.mean(v):.4f} | {np.std(v):.4f} | {min(v):.4f} | "
          f"{max(v):.4f} |\n\n{per_call:.2f} s per call")


if __name__ == "__main__":
    main()
