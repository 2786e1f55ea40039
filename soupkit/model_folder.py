"""What a sentence-transformers model folder holds: its modules, their safetensors files and tensors.

Only the safetensors headers are read (through `safe_open`), never the tensor data, so scanning a
folder is instant whatever its size. Pickled weights are refused: loading them runs arbitrary code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from soupkit.errors import SoupkitError

# Folders that hold exports of the same weights for other runtimes; a merge cannot update them.
BACKEND_EXPORT_DIRS = frozenset({"onnx", "openvino"})
PICKLED_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Other runtimes' weight formats: never copied into a merged folder, where they would be stale.
OTHER_WEIGHT_SUFFIXES = (".onnx", ".h5", ".msgpack", ".ot", ".gguf", ".tflite")
# sentence-transformers modules that hold weights: such a module without a safetensors file is a
# damaged folder (a deleted or never-copied model.safetensors), never a model to merge or load
WEIGHTED_MODULES = frozenset({"Transformer", "MLMTransformer", "Dense", "StaticEmbedding", "WordEmbeddings",
                              "LayerNorm", "LSTM", "CNN", "WeightedLayerPooling", "CLIPModel"})


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # safetensors spelling: F32, BF16, I64, ...
    shape: tuple[int, ...]
    file: Path  # the safetensors file that holds it (model folder / relative path)

    @property
    def is_floating(self) -> bool:
        return self.dtype.startswith(("F", "BF"))


@dataclass
class ModuleFolder:
    """One entry of modules.json and the safetensors files under its folder."""

    idx: int
    name: str
    path: str  # relative to the model folder; "" for a module saved at the root
    type: str
    weight_files: list[Path] = field(default_factory=list)  # relative to the model folder
    tensors: dict[str, TensorInfo] = field(default_factory=dict)  # in file-data order

    @property
    def class_name(self) -> str:
        return self.type.rsplit(".", 1)[-1]


@dataclass
class ModelFolder:
    path: Path
    modules: list[ModuleFolder]

    def weight_files(self) -> list[Path]:
        return [file for module in self.modules for file in module.weight_files]

    def float_dtypes(self) -> set[str]:
        return {t.dtype for m in self.modules for t in m.tensors.values() if t.is_floating}


def read_model_folder(path: str | Path) -> ModelFolder:
    """Scan a sentence-transformers folder: modules.json, weight files and tensor headers."""
    folder = Path(path)
    if not folder.is_dir():
        raise SoupkitError(f"model folder not found: {folder}")
    modules_json = folder / "modules.json"
    if not modules_json.is_file():
        raise SoupkitError(f"{folder} is not a sentence-transformers model folder: it has no modules.json")
    try:
        entries = json.loads(modules_json.read_text())
        modules = [ModuleFolder(int(e["idx"]), str(e["name"]), str(e["path"]), str(e["type"])) for e in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise SoupkitError(f"{modules_json}: cannot read the module list ({exc})") from None

    for relative_file in _safetensors_files(folder):
        owner = _owning_module(modules, relative_file)
        if owner is None:
            continue  # a safetensors file outside every module folder is not part of the model
        owner.weight_files.append(relative_file)
        for tensor in list_tensors(folder / relative_file):
            owner.tensors[tensor.name] = tensor
    _refuse_pickled_weights(folder, modules)
    _refuse_missing_weights(folder, modules)
    return ModelFolder(folder, modules)


def list_tensors(file: Path) -> list[TensorInfo]:
    """Names, dtypes and shapes of a safetensors file, in the order of their data in the file."""
    from safetensors import safe_open

    try:
        with safe_open(file, framework="numpy") as handle:  # headers only; "pt" would import torch
            infos = []
            for name in handle.offset_keys():
                view = handle.get_slice(name)
                infos.append(TensorInfo(name, view.get_dtype(), tuple(view.get_shape()), file))
            return infos
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise SoupkitError(f"{file}: not a readable safetensors file ({exc})") from None


def is_hidden_or_export(relative: Path) -> bool:
    parts = relative.parts
    return any(part.startswith(".") for part in parts) or (len(parts) > 1 and parts[0] in BACKEND_EXPORT_DIRS)


def _safetensors_files(folder: Path) -> list[Path]:
    files = sorted(p.relative_to(folder) for p in folder.rglob("*.safetensors") if p.is_file())
    return [file for file in files if not is_hidden_or_export(file)]


def _owning_module(modules: list[ModuleFolder], relative_file: Path) -> ModuleFolder | None:
    """The module whose folder holds the file: a module at the root owns only the root's own
    files; any other module its whole folder (a Router keeps sub-modules in subfolders)."""
    directory = relative_file.parent.as_posix()
    directory = "" if directory == "." else directory
    best = None
    for module in modules:
        prefix = module.path.strip("/")
        if prefix == directory or (prefix and directory.startswith(prefix + "/")):
            if best is None or len(prefix) > len(best.path.strip("/")):
                best = module
    return best


def in_module_folder(modules: list[ModuleFolder], relative_file: Path) -> bool:
    return len(relative_file.parts) == 1 or _owning_module(modules, relative_file) is not None


def _refuse_pickled_weights(folder: Path, modules: list[ModuleFolder]) -> None:
    for module in modules:
        module_dir = folder / module.path
        if module.weight_files or not module_dir.is_dir():
            continue
        pickled = sorted(p.name for p in module_dir.iterdir() if p.is_file() and _looks_like_pickled_weights(p))
        if pickled:
            raise SoupkitError(
                f"{module_dir / pickled[0]}: pickled weights are not read (loading them can run code); "
                "convert the model to safetensors first, e.g. "
                "SentenceTransformer(path).save_pretrained(new_path)"
            )


def _refuse_missing_weights(folder: Path, modules: list[ModuleFolder]) -> None:
    for module in modules:
        if module.class_name in WEIGHTED_MODULES and not module.weight_files:
            expected = folder / module.path / "model.safetensors"
            raise SoupkitError(
                f"{expected} is missing: module '{module.name}' ({module.class_name}) of {folder} has no weights; "
                "this model folder is incomplete (copy or train it again)"
            )


def _looks_like_pickled_weights(path: Path) -> bool:
    name = path.name
    if name.startswith(("pytorch_model", "model")) and name.endswith(PICKLED_WEIGHT_SUFFIXES):
        return True
    return name.endswith((".pt", ".pth", ".ckpt"))
