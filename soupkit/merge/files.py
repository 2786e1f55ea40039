"""Carry a model folder's non-weight files (configs, tokenizer, prompts, module configs) into a merge."""

from __future__ import annotations

import shutil
from pathlib import Path

from soupkit.model_folder import (
    BACKEND_EXPORT_DIRS,
    OTHER_WEIGHT_SUFFIXES,
    PICKLED_WEIGHT_SUFFIXES,
    ModelFolder,
    in_module_folder,
)

# Written fresh for every merged folder.
OWN_FILES = frozenset({"README.md", "soupkit_merge.yaml"})


def copy_support_files(source: ModelFolder, destination: Path, *, replace: bool = True) -> list[str]:
    """Copy every file of the root and the module folders except weights into `destination`;
    return what was left out and why.

    Weights that a merge cannot update (pickles, ONNX/OpenVINO exports, other runtimes' formats)
    are left out: beside merged safetensors they would silently hold the first input's weights.
    With replace=False, files already in `destination` are kept.
    """
    weight_files = set(source.weight_files())
    left_out: list[str] = []
    for path in sorted(source.path.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(source.path)
        if relative in weight_files or (len(relative.parts) == 1 and relative.name in OWN_FILES):
            continue
        reason = _leave_out_reason(relative, source)
        if reason is not None:
            if reason and reason not in left_out:
                left_out.append(reason)
            continue
        target = destination / relative
        if target.exists() and not replace:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return left_out


def _leave_out_reason(relative: Path, source: ModelFolder) -> str | None:
    """None: copy it. "": leave it out silently (hidden files: .git, caches). Else: the reason."""
    if any(part.startswith(".") for part in relative.parts):
        return ""
    if len(relative.parts) > 1 and relative.parts[0] in BACKEND_EXPORT_DIRS:
        return f"{relative.parts[0]}/ (export of the unmerged weights)"
    if not in_module_folder(source.modules, relative):
        return f"{relative.parts[0]}/ (not a module's folder)"  # e.g. a trainer's checkpoint-500/
    if relative.suffix in PICKLED_WEIGHT_SUFFIXES:
        return f"{relative} (pickled)"
    if relative.suffix in OTHER_WEIGHT_SUFFIXES or relative.suffix == ".safetensors":
        return f"{relative} (weights outside the model's modules)"
    return None
