"""dare_ties: task vectors randomly dropped to `density` and rescaled, then TIES sign election."""

from __future__ import annotations

from soupkit.merge.methods import MergeJob, merge_method


@merge_method(
    "dare_ties",
    summary="DARE drop-and-rescale of task vectors (keep `density`), then TIES sign election",
    backend="sentence-transformers",
    base="required",
    weights="scaled",
    parameters=("density", "lambda", "normalize", "seed"),
)
def dare_ties(job: MergeJob) -> list[str]:
    from soupkit.merge.mergekit_backend import merge_with_sentence_transformers

    return merge_with_sentence_transformers(job, "dare_ties")
