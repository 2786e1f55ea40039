"""uniform: the plain model soup, every input weighted equally; streaming, torch + safetensors only."""

from __future__ import annotations

from soupkit.merge.methods import MergeJob, merge_method


@merge_method(
    "uniform",
    summary="average of all inputs, equal weights (the model soup); streams tensor by tensor",
    backend="streaming",
)
def uniform(job: MergeJob) -> list[str]:
    from soupkit.merge.files import copy_support_files
    from soupkit.merge.streaming import stream_weighted_average

    count = len(job.inputs)
    stream_weighted_average(job.inputs, [1.0 / count] * count, job.destination)
    return copy_support_files(job.inputs[0], job.destination)
