"""Run a mergekit method on whole sentence-transformers models via `SentenceTransformer.merge`.

sentence-transformers applies the method to every module's floating-point tensors (transformer,
Dense heads, ...) with its own compatibility checks, and mergekit owns the maths. Both take
seconds to import and hold every input in memory; the soups (uniform, weighted) stream instead.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

from soupkit.errors import SoupkitError
from soupkit.merge.files import copy_support_files
from soupkit.merge.methods import MergeJob, merge_method

FLOAT_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
# soupkit's own parameter, not passed to mergekit: seeds the random drops of the DARE methods.
SEED_PARAMETER = "seed"


def merge_with_sentence_transformers(job: MergeJob, method: str) -> list[str]:
    if importlib.util.find_spec("mergekit") is None:
        raise SoupkitError(
            f"merge method '{method}' runs through mergekit, which is not installed; "
            "install it with: pip install 'mergekit>=0.1.5'"
        )
    import torch
    from sentence_transformers import SentenceTransformer

    parameters = dict(job.parameters)
    torch.manual_seed(int(parameters.pop(SEED_PARAMETER, 0)))
    if job.weights is not None:
        parameters["weight"] = list(job.weights)
    models = [str(folder.path) for folder in job.inputs]
    base = None
    if job.base is not None:
        base = models[job.base_index] if job.base_index is not None else str(job.base.path)

    folders = job.inputs + ([job.base] if job.base is not None and job.base_index is None else [])
    dtypes = set().union(*(folder.float_dtypes() for folder in folders))
    # Inputs load as float32 and are merged in float32; the result goes back to their dtype.
    out_dtype = getattr(torch, FLOAT_DTYPES[dtypes.pop()]) if len(dtypes) == 1 else None
    try:
        merged = SentenceTransformer.merge(
            models, method, base_model=base, parameters=parameters,
            dtype=torch.float32, out_dtype=out_dtype, local_files_only=True,
        )
    except ImportError as exc:
        raise SoupkitError(f"merge method '{method}': {exc}") from None
    except (ValueError, TypeError) as exc:  # mergekit rejects a parameter or the inputs
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        message = "; ".join(line for line in lines if not line.startswith("For further information"))
        raise SoupkitError(f"merge method '{method}' (mergekit): {message or type(exc).__name__}") from None
    merged.save_pretrained(str(job.destination), create_model_card=False)
    del merged
    # sentence-transformers wrote configs, tokenizer and prompts; add what it does not know about.
    return copy_support_files(job.inputs[0], job.destination, replace=False)


def _register(name: str, *, summary: str, **needs: Any) -> None:
    merge_method(name, summary=summary, backend="sentence-transformers", **needs)(
        functools.partial(merge_with_sentence_transformers, method=name)
    )


# The mergekit methods soupkit offers, with what each needs (see MergeMethod); each runs through
# `merge_with_sentence_transformers` under its own name.
_register(
    "dare_linear",
    summary="DARE drop-and-rescale of task vectors (keep `density`), weighted sum onto base",
    base="required",
    weights="scaled",
    parameters=("density", "lambda", "normalize", "seed"),
)
_register(
    "dare_ties",
    summary="DARE drop-and-rescale of task vectors (keep `density`), then TIES sign election",
    base="required",
    weights="scaled",
    parameters=("density", "lambda", "normalize", "seed"),
)
_register(
    "linear",
    summary="mergekit's weighted average in memory; same result as weighted/uniform, more memory",
    weights="normalised",
    parameters=("normalize",),
)
_register(
    "model_stock",
    summary="Model Stock: average of >= 2 finetunes pulled toward base by the angle between them",
    base="required",
    min_models=3,
    parameters=("filter_wise",),
)
_register(
    "slerp",
    summary="spherical interpolation of two models; base = first input unless given; t=0.5",
    base="optional",
    min_models=2,
    max_models=2,
    parameters=("t",),
)
_register(
    "task_arithmetic",
    summary="base + sum_i weight_i * (input_i - base); weights scale each task vector",
    base="required",
    weights="scaled",
    min_models=2,
    parameters=("lambda", "normalize"),
)
_register(
    "ties",
    summary="TIES: trim task vectors to `density`, elect signs, average what agrees, add to base",
    base="required",
    weights="normalised",
    parameters=("density", "lambda", "normalize"),
)
