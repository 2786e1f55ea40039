"""task_arithmetic: base + sum of weighted task vectors (finetune - base), via mergekit."""

from __future__ import annotations

from soupkit.merge.methods import MergeJob, merge_method


@merge_method(
    "task_arithmetic",
    summary="base + sum_i weight_i * (input_i - base); weights scale each task vector",
    backend="sentence-transformers",
    base="required",
    weights="scaled",
    min_models=2,
    parameters=("lambda", "normalize"),
)
def task_arithmetic(job: MergeJob) -> list[str]:
    from soupkit.merge.mergekit_backend import merge_with_sentence_transformers

    return merge_with_sentence_transformers(job, "task_arithmetic")
