"""weighted: an average with one weight per input, normalised to sum to 1; streaming."""

from __future__ import annotations

from soupkit.merge.methods import MergeJob, merge_method, normalised


@merge_method(
    "weighted",
    summary="weighted average, weights normalised to sum to 1; streams tensor by tensor",
    backend="streaming",
    weights="normalised",
    needs_weights=True,
)
def weighted(job: MergeJob) -> list[str]:
    from soupkit.merge.files import copy_support_files
    from soupkit.merge.streaming import stream_weighted_average

    assert job.weights is not None  # merge_models enforces needs_weights
    stream_weighted_average(job.inputs, normalised(job.weights), job.destination)
    return copy_support_files(job.inputs[0], job.destination)
