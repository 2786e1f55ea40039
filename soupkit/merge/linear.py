"""linear: mergekit's weighted average of every module, in memory (reference for the soups)."""

from __future__ import annotations

from soupkit.merge.methods import MergeJob, merge_method


@merge_method(
    "linear",
    summary="mergekit's weighted average in memory; same result as weighted/uniform, more memory",
    backend="sentence-transformers",
    weights="normalised",
    parameters=("normalize",),
)
def linear(job: MergeJob) -> list[str]:
    from soupkit.merge.mergekit_backend import merge_with_sentence_transformers

    return merge_with_sentence_transformers(job, "linear")
