"""Can these model folders be merged? Checked from headers and configs before anything is written.

Every check compares each folder with the first one and stops at the first mismatch, reported as
one line that names both files and what differs (tensor, shapes, dtypes, config key, token id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from soupkit.errors import SoupkitError
from soupkit.model_folder import ModelFolder, ModuleFolder

# Provenance and storage details that differ between honest finetunes of one model.
VOLATILE_CONFIG_KEYS = frozenset({"architectures", "transformers_version", "torch_dtype", "dtype", "use_cache"})
# Tokenizer files in the order a vocabulary is read from; binary ones are compared byte for byte.
VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                    "sentencepiece.bpe.model")


def check_compatible(folders: list[ModelFolder]) -> None:
    """Raise SoupkitError naming the first difference between folders[0] and any other folder."""
    reference = folders[0]
    for other in folders[1:]:
        _check_modules(reference, other)
        for ref_module, module in zip(reference.modules, other.modules):
            _check_tensors(reference, ref_module, other, module)
        for ref_module in reference.modules:
            _check_vocabulary(reference.path / ref_module.path, other.path / ref_module.path)
            _check_config(reference.path / ref_module.path, other.path / ref_module.path)


def largest_compatible_group(folders: list[ModelFolder]) -> tuple[list[int], dict[int, str]]:
    """Split folders into groups that merge with each group's first folder; return the indices of
    the largest group (the earliest on a tie) and, for every other folder, why it does not merge
    with that group (the SoupkitError line of `check_compatible`)."""
    groups: list[list[int]] = []
    reasons: dict[int, dict[int, str]] = {}  # folder -> {group's first folder: reason}
    for index, folder in enumerate(folders):
        for group in groups:
            try:
                check_compatible([folders[group[0]], folder])
            except SoupkitError as exc:
                reasons.setdefault(index, {})[group[0]] = str(exc)
                continue
            group.append(index)
            break
        else:
            groups.append([index])
    best = max(groups, key=len) if groups else []
    left_out = {}
    for index in range(len(folders)):
        if index not in best:
            left_out[index] = reasons.get(index, {}).get(best[0]) or _reason(folders[best[0]], folders[index])
    return best, left_out


def _reason(reference: ModelFolder, other: ModelFolder) -> str:
    try:
        check_compatible([reference, other])
    except SoupkitError as exc:
        return str(exc)
    return f"{other.path}: merges with {reference.path} but not with the rest of its group"


def _check_modules(reference: ModelFolder, other: ModelFolder) -> None:
    ref_file, other_file = reference.path / "modules.json", other.path / "modules.json"
    if len(reference.modules) != len(other.modules):
        raise SoupkitError(
            f"{other_file}: {len(other.modules)} modules, but {ref_file} has {len(reference.modules)}"
        )
    for ref_module, module in zip(reference.modules, other.modules):
        if (module.path, module.class_name) != (ref_module.path, ref_module.class_name):
            raise SoupkitError(
                f"{other_file}: module {module.idx} is {module.class_name} at '{module.path}', "
                f"but {ref_file} has {ref_module.class_name} at '{ref_module.path}'"
            )


def _check_tensors(reference: ModelFolder, ref_module: ModuleFolder, other: ModelFolder, module: ModuleFolder) -> None:
    """Same floating tensors, shapes and dtypes. An integer buffer may be present in one folder
    only: transformers versions differ in whether they save one (BERT's `position_ids`), and the
    merge copies the first input's."""
    for name, ref_tensor in ref_module.tensors.items():
        tensor = module.tensors.get(name)
        if tensor is None and not ref_tensor.is_floating:
            continue
        if tensor is None:
            where = _weights_label(other, module)
            raise SoupkitError(f"{where}: tensor '{name}' is missing; {ref_tensor.file} has it")
        if tensor.shape != ref_tensor.shape:
            raise SoupkitError(
                f"{tensor.file}: tensor '{name}' has shape {list(tensor.shape)}, "
                f"but {ref_tensor.file} has {list(ref_tensor.shape)}"
            )
        if tensor.dtype != ref_tensor.dtype:
            raise SoupkitError(
                f"{tensor.file}: tensor '{name}' is {tensor.dtype}, but {ref_tensor.file} has {ref_tensor.dtype}"
            )
    extra = [name for name, t in module.tensors.items() if name not in ref_module.tensors and t.is_floating]
    if extra:
        raise SoupkitError(
            f"{module.tensors[extra[0]].file}: tensor '{extra[0]}' is not in {_weights_label(reference, ref_module)}"
        )


def _weights_label(folder: ModelFolder, module: ModuleFolder) -> Path:
    return folder.path / module.weight_files[0] if module.weight_files else folder.path / module.path


def _check_vocabulary(ref_dir: Path, other_dir: Path) -> None:
    name = next((n for n in VOCABULARY_FILES if (ref_dir / n).is_file()), None)
    if name is None:
        return
    ref_file, other_file = ref_dir / name, other_dir / name
    if not other_file.is_file():
        raise SoupkitError(f"{other_dir}: no {name}, but {ref_file} has a tokenizer vocabulary")
    ref_bytes, other_bytes = ref_file.read_bytes(), other_file.read_bytes()
    if ref_bytes == other_bytes:
        return
    if name.endswith(".model"):
        raise SoupkitError(f"{other_file}: tokenizer model differs from {ref_file}")
    ref_tokens, other_tokens = _tokens_by_id(ref_file, ref_bytes), _tokens_by_id(other_file, other_bytes)
    if ref_tokens == other_tokens:
        return  # same vocabulary, other tokenizer settings (those are taken from the first input)
    first = next(
        (i for i in range(max(len(ref_tokens), len(other_tokens)))
         if ref_tokens.get(i) != other_tokens.get(i)),
    )
    raise SoupkitError(
        f"{other_file}: tokenizer vocabulary differs from {ref_file} ({len(other_tokens)} vs "
        f"{len(ref_tokens)} tokens; first difference at id {first}: "
        f"{other_tokens.get(first)!r} vs {ref_tokens.get(first)!r})"
    )


def _tokens_by_id(file: Path, data: bytes) -> dict[int, str]:
    """The vocabulary of a tokenizer file, id -> token; a damaged file is one line naming it."""
    try:
        return _read_tokens(file.name, data)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SoupkitError(f"{file}: not a readable tokenizer file ({reason}); is it truncated?") from None


def _read_tokens(name: str, data: bytes) -> dict[int, str]:
    text = data.decode("utf-8")
    if name == "vocab.txt":
        return dict(enumerate(text.splitlines()))
    content = json.loads(text)
    if name == "vocab.json":
        return {int(i): token for token, i in content.items()}
    vocab = (content.get("model") or {}).get("vocab") or {}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...] in id order
        tokens = {i: entry[0] for i, entry in enumerate(vocab)}
    else:
        tokens = {int(i): token for token, i in vocab.items()}
    tokens.update({int(added["id"]): added["content"] for added in content.get("added_tokens") or []})
    return tokens


def _check_config(ref_dir: Path, other_dir: Path) -> None:
    ref_file, other_file = ref_dir / "config.json", other_dir / "config.json"
    if not ref_file.is_file():
        return
    if not other_file.is_file():
        raise SoupkitError(f"{other_dir}: no config.json, but {ref_file} has one")
    ref_config, other_config = _comparable_config(ref_file), _comparable_config(other_file)
    # In a transformers config (it names its model_type), a key written by one folder only is a
    # library version's default saved or not (transformers 5 writes `is_decoder: false`, 4.8 left
    # it out): only keys both hold compare. Module configs (pooling, dense) compare every key.
    shared_only = "model_type" in ref_config and "model_type" in other_config
    keys = set(ref_config) & set(other_config) if shared_only else set(ref_config) | set(other_config)
    for key in sorted(keys):
        if ref_config.get(key, "<absent>") != other_config.get(key, "<absent>"):
            raise SoupkitError(
                f"{other_file}: '{key}' is {other_config.get(key, '<absent>')!r}, "
                f"but {ref_file} has {ref_config.get(key, '<absent>')!r}"
            )


def _comparable_config(file: Path) -> dict[str, Any]:
    try:
        config = json.loads(file.read_text())
    except ValueError as exc:
        raise SoupkitError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        return {"<config>": config}
    return {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_KEYS and not k.startswith("_")}
