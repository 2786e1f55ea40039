"""slerp: spherical interpolation between exactly two models, t=0 the base, t=1 the other."""

from __future__ import annotations

from soupkit.merge.methods import MergeJob, merge_method


@merge_method(
    "slerp",
    summary="spherical interpolation of two models; base = first input unless given; t=0.5",
    backend="sentence-transformers",
    base="optional",
    min_models=2,
    max_models=2,
    parameters=("t",),
)
def slerp(job: MergeJob) -> list[str]:
    from soupkit.merge.mergekit_backend import merge_with_sentence_transformers

    return merge_with_sentence_transformers(job, "slerp")
