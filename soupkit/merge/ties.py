"""ties: task vectors trimmed to their largest entries, signs elected, agreeing entries averaged."""

from __future__ import annotations

from soupkit.merge.methods import MergeJob, merge_method


@merge_method(
    "ties",
    summary="TIES: trim task vectors to `density`, elect signs, average what agrees, add to base",
    backend="sentence-transformers",
    base="required",
    weights="normalised",
    parameters=("density", "lambda", "normalize"),
)
def ties(job: MergeJob) -> list[str]:
    from soupkit.merge.mergekit_backend import merge_with_sentence_transformers

    return merge_with_sentence_transformers(job, "ties")
