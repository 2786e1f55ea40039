"""merge_models: check whole model folders, merge them with a registered method, write atomically."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from soupkit.atomic import atomic_dir, check_can_write
from soupkit.errors import SoupkitError
from soupkit.merge.compat import check_compatible
from soupkit.model_folder import read_model_folder
from soupkit.merge.methods import METHODS, MergeJob, MergeMethod, normalised
from soupkit.merge.record import MERGE_RECORD, MergeRecord, merge_command, write_merge_record, write_model_card
from soupkit.pause import pause_for_test

PathLike = str | os.PathLike


def merge_models(
    inputs: Sequence[PathLike],
    out: PathLike,
    method: str = "uniform",
    weights: Sequence[float] | None = None,
    base: PathLike | None = None,
    parameters: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    command: str | None = None,
) -> Path:
    """Merge sentence-transformers folders into `out`; return `out`.

    Everything is checked before anything is written (method needs, weights, then every folder's
    modules, tensors, shapes, dtypes, tokenizer and configs). The model is written into a hidden
    folder beside `out` and renamed to `out` only when complete, with README.md and
    soupkit_merge.yaml. `weights` cover the inputs, or the non-base inputs when `base` is one of
    them. `command` is recorded as given (the CLI passes its argv); by default an equivalent
    `soupkit merge` line is recorded. Raises SoupkitError (one line) on any problem of the inputs.
    """
    if isinstance(inputs, (str, os.PathLike)):
        raise SoupkitError(f"merge needs a list of model folders, got the single path {inputs}")
    spec = METHODS.get(method)
    parameters = dict(parameters or {})
    out = Path(out)
    folders, base_folder, base_index = _read_inputs(spec, list(inputs), base)
    weights = _checked_weights(spec, weights, len(folders) - (base_index is not None), base_index is not None)
    if parameters and spec.backend == "streaming":
        raise SoupkitError(f"merge method '{spec.name}' takes no parameters (got: {', '.join(parameters)})")
    _check_parameter_values(parameters)
    check_compatible(folders + ([base_folder] if base_folder is not None and base_index is None else []))
    _check_destination(out, [f.path for f in folders] + ([base_folder.path] if base_folder else []), overwrite)

    inputs_resolved = [str(f.path.resolve()) for f in folders]
    base_resolved = str(base_folder.path.resolve()) if base_folder is not None else None
    if spec.name == "uniform":
        shares = [1.0 / len(folders)] * len(folders)
    else:
        shares = normalised(weights) if weights is not None and spec.weights == "normalised" else None
    record = MergeRecord(
        method=spec.name,
        inputs=inputs_resolved,
        weights=weights,
        normalised_weights=shares,
        base=base_resolved,
        parameters=parameters,
        command=command or merge_command(
            inputs_resolved, str(out.resolve()), spec.name, weights, base_resolved, parameters
        ),
        left_out=[],
        base_index=base_index,
    )

    with atomic_dir(out) as staging:
        job = MergeJob(folders, staging, base_folder, base_index, weights, parameters)
        left_out = spec.run(job)
        record = dataclasses.replace(record, left_out=left_out)
        write_model_card(staging, record, out.name)
        write_merge_record(staging, record)
        pause_for_test("soup_write")
    return out


def parse_weights(text: str) -> list[float]:
    """'1,2,0.5' -> [1.0, 2.0, 0.5] (the CLI's --weights)."""
    values = []
    for item in text.split(","):
        try:
            values.append(float(item))
        except ValueError:
            raise SoupkitError(f"--weights: {item.strip()!r} is not a number (expected e.g. 0.5,0.3,0.2)") from None
    return values


def parse_parameters(items: Sequence[str]) -> dict[str, Any]:
    """['density=0.5', 'normalize=false'] -> {'density': 0.5, 'normalize': False} (YAML values)."""
    import yaml

    parameters: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SoupkitError(f"parameter {item!r} is not KEY=VALUE (e.g. density=0.5)")
        try:
            parameters[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SoupkitError(f"parameter '{key.strip()}': {value!r} is not a value ({problem}); "
                               "give a number, true/false or a list such as [0.2, 0.8]") from None
    return parameters


def _read_inputs(spec: MergeMethod, inputs: list[PathLike], base: PathLike | None):
    if not inputs:
        raise SoupkitError("merge needs at least one model folder")
    if base is None and spec.base == "required":
        raise SoupkitError(
            f"merge method '{spec.name}' needs a base model (--base): the model the inputs were finetuned from"
        )
    if base is not None and spec.base == "ignored":
        raise SoupkitError(f"merge method '{spec.name}' does not use a base model; leave out --base")
    folders = [read_model_folder(p) for p in inputs]
    seen: dict[Path, PathLike] = {}
    for given, folder in zip(inputs, folders):
        real = folder.path.resolve()  # a link to an input is that input
        if real in seen:
            also = f" ({given} is a link to it)" if Path(given).absolute() != real else ""
            raise SoupkitError(f"model folder {seen[real]} is given twice{also}: a soup of one model with itself "
                               "is that model; give each input once (use --weights to weigh one more)")
        seen[real] = given
    base_folder, base_index = None, None
    if base is not None:
        resolved = [f.path.resolve() for f in folders]
        base_path = Path(base).resolve()
        base_index = resolved.index(base_path) if base_path in resolved else None
        base_folder = folders[base_index] if base_index is not None else read_model_folder(base)
    count = len(folders) + (base_folder is not None and base_index is None)
    if count < spec.min_models or (spec.max_models is not None and count > spec.max_models):
        wanted = f"exactly {spec.min_models}" if spec.min_models == spec.max_models else f"at least {spec.min_models}"
        raise SoupkitError(
            f"merge method '{spec.name}' merges {wanted} models (a separate --base counts); got {count}"
        )
    return folders, base_folder, base_index


def _checked_weights(
    spec: MergeMethod, weights: Sequence[float] | None, expected: int, base_among_inputs: bool
) -> list[float] | None:
    if weights is None:
        if spec.needs_weights:
            raise SoupkitError(f"merge method '{spec.name}' needs --weights, one per input (e.g. 0.5,0.3,0.2)")
        return None
    if spec.weights == "none":
        hint = "; use method 'weighted'" if spec.name == "uniform" else ""
        raise SoupkitError(f"merge method '{spec.name}' takes no --weights{hint}")
    weights = [float(w) for w in weights]
    if len(weights) != expected:
        which = "input other than the base" if base_among_inputs else "input"
        raise SoupkitError(f"--weights has {len(weights)} values for {expected} model(s); give one per {which}")
    if not all(math.isfinite(w) for w in weights):
        raise SoupkitError(f"--weights must be finite numbers, got {weights}")
    if spec.weights == "normalised" and (min(weights) < 0 or sum(weights) <= 0):
        raise SoupkitError(f"--weights for '{spec.name}' are shares: >= 0 and not all 0, got {weights}")
    return weights


# parameters whose range is known: fractions of the weights kept (density) or of the way between
# two models (t); the seed of the DARE methods' random drops
FRACTION_PARAMETERS = ("density", "t")
MAX_SEED = 2**32 - 1


def _check_parameter_values(parameters: dict[str, Any]) -> None:
    """Every value a finite number, true/false or a list of them (mergekit's gradients); fractions
    within [0, 1]; the seed a whole number. Checked before anything is read or written."""

    def numbers(value: Any) -> list[Any]:
        return [n for item in value for n in numbers(item)] if isinstance(value, list) else [value]

    for key, value in parameters.items():
        for number in numbers(value):
            if isinstance(number, bool):
                continue
            if not isinstance(number, (int, float)) or not math.isfinite(number):
                raise SoupkitError(f"parameter '{key}' must be a finite number or true/false, got {value!r}")
            if key in FRACTION_PARAMETERS and not 0 <= number <= 1:
                raise SoupkitError(f"parameter '{key}' must be between 0 and 1, got {value!r}")
            if key == "seed" and (not isinstance(number, int) or not 0 <= number <= MAX_SEED):
                raise SoupkitError(f"parameter 'seed' must be a whole number from 0 to {MAX_SEED}, got {value!r}")


def _check_destination(out: Path, sources: list[Path], overwrite: bool) -> None:
    """The output may not be, hold or sit inside an input; an existing non-empty folder is replaced
    only with `overwrite`, and only when soupkit wrote it (it holds soupkit's merge record)."""
    target = out.resolve()
    if target == Path.cwd().resolve() or target in Path.cwd().resolve().parents:
        raise SoupkitError(f"output folder {out} is the current folder or holds it; run the merge from outside it "
                           "(the folder is replaced as a whole)")
    for source in sources:
        resolved = source.resolve()
        if target == resolved or resolved in target.parents:
            raise SoupkitError(f"output folder {out} is inside input {source}; choose another output folder")
        if target in resolved.parents:
            raise SoupkitError(f"output folder {out} holds input {source}; choose another output folder")
    check_can_write(out, "output folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise SoupkitError(f"output folder {out} already exists and is not empty; remove it or choose another")
        if not (out / MERGE_RECORD).is_file():
            raise SoupkitError(f"--overwrite replaces only a merged model soupkit wrote (with {MERGE_RECORD}); "
                               f"{out} has none: choose another output folder, or remove it yourself")

