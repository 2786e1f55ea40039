"""dare_linear: task vectors randomly dropped to `density` and rescaled, then summed onto base."""

from __future__ import annotations

from soupkit.merge.methods import MergeJob, merge_method


@merge_method(
    "dare_linear",
    summary="DARE drop-and-rescale of task vectors (keep `density`), weighted sum onto base",
    backend="sentence-transformers",
    base="required",
    weights="scaled",
    parameters=("density", "lambda", "normalize", "seed"),
)
def dare_linear(job: MergeJob) -> list[str]:
    from soupkit.merge.mergekit_backend import merge_with_sentence_transformers

    return merge_with_sentence_transformers(job, "dare_linear")
