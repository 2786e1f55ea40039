"""model_stock: interpolates the finetunes' average toward the base by their task vectors' angle."""

from __future__ import annotations

from soupkit.merge.methods import MergeJob, merge_method


@merge_method(
    "model_stock",
    summary="Model Stock: average of >= 2 finetunes pulled toward base by the angle between them",
    backend="sentence-transformers",
    base="required",
    min_models=3,
    parameters=("filter_wise",),
)
def model_stock(job: MergeJob) -> list[str]:
    from soupkit.merge.mergekit_backend import merge_with_sentence_transformers

    return merge_with_sentence_transformers(job, "model_stock")
