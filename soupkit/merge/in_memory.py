"""Weighted averages of a bank of model folders, written into one loaded model in place.

A search over soup weights merges hundreds of times; writing and loading a folder each time would
cost more than scoring it. `InMemoryMerge` checks the bank once (the same checks as
`merge_models`), loads every member's state once, and keeps each floating tensor the members
hold differently as one `[members, elements]` matrix. A merge is then one matrix-vector product per tensor, written
straight into the parameters of a SentenceTransformer loaded from the first member, so every
module (Transformer, Dense heads) is merged and nothing is written to disk. Integer buffers
(position ids) stay the first member's, as in the streaming merge, and so does a tensor every
member holds identically (the frozen bottom of `train: top:<k>` checkpoints): it is never
averaged (a weighted sum of equal values is not always bit-equal to them), and needs no stack.
Members after the first are read straight from their safetensors files (`SavedTensors`), not
built as models: what loading a member costs is then the disk read, not the tokenizer and modules.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from soupkit.errors import SoupkitError
from soupkit.merge.compat import check_compatible
from soupkit.model_folder import read_model_folder

if TYPE_CHECKING:
    import torch

PathLike = str | os.PathLike
# Low-precision tensors are summed in float32 in row chunks of about this many elements, so the
# float32 copy of a chunk stays in cache (as the streaming merge does).
CHUNK_ELEMENTS = 1 << 20


@dataclass
class _Target:
    """One floating tensor of the live model and every member's values of it."""

    name: str
    value: torch.Tensor  # the live model's parameter or buffer, overwritten by each merge
    stack: torch.Tensor | None  # [members, elements], in the tensor's own dtype; None while every member's is equal


class InMemoryMerge:
    """A bank of mergeable sentence-transformers folders, held in memory.

    `merge(weights)` returns the bank's weighted average as a SentenceTransformer. It is always the
    same model object: the next merge overwrites it. Memory: every member's floating tensors once,
    plus the model.
    """

    def __init__(self, folders: Sequence[PathLike], device: str | None = None) -> None:
        import torch

        if isinstance(folders, (str, os.PathLike)) or not folders:
            raise SoupkitError("an in-memory merge needs a list of at least one model folder")
        self.paths = [Path(f) for f in folders]
        check_compatible([read_model_folder(p) for p in self.paths])
        self.model = _load(self.paths[0], device)
        self.model.eval()
        self._targets = _floating_targets(self.model)
        with torch.no_grad():
            self._fill(0, self.model.state_dict())
            reader = SavedTensors.checked(self.paths[0], self._targets)
            for index, path in enumerate(self.paths[1:], start=1):
                state = reader.read(path) if reader is not None else None
                self._fill(index, state if state is not None else _load(path, "cpu").state_dict())
        self.weights: list[float] = [1.0] + [0.0] * (len(self.paths) - 1)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def parameter_count(self) -> int:
        return sum(t.value.numel() for t in self._targets)

    @property
    def varying_names(self) -> set[str]:
        """Names of the tensors a merge writes: those whose members differ."""
        return {t.name for t in self._targets if t.stack is not None}

    def _fill(self, index: int, state) -> None:
        import torch

        for target in self._targets:
            value = state.get(target.name)
            if value is None or value.shape != target.value.shape:
                raise SoupkitError(
                    f"{self.paths[index]}: loaded tensor '{target.name}' is missing or has another shape "
                    f"than in {self.paths[0]}"
                )
            if target.stack is None:
                if index == 0 or torch.equal(value.to(target.value.device), target.value):
                    continue  # the live model holds member 0's value, equal to every member's so far
                target.stack = torch.empty((len(self.paths), value.numel()), dtype=value.dtype, device=value.device)
                target.stack[:index].copy_(target.value.reshape(1, -1))
            target.stack[index].copy_(value.reshape(-1))

    def merge(self, weights: Sequence[float]):
        """Write sum_i w_i * member_i (weights normalised to sum to 1) into the model; return it."""
        import torch

        shares = checked_shares(weights, len(self.paths))
        with torch.no_grad():
            vector = torch.tensor(shares, dtype=torch.float32, device=self.model.device)
            for target in self._targets:
                if target.stack is not None:
                    _weighted_rows(target, vector)
        self.weights = shares
        return self.model


@dataclass
class SavedTensors:
    """Reads a member's tensors straight from its safetensors files, under the loaded model's names.

    Building a SentenceTransformer per member (tokenizer, config, module objects) took most of an
    EmbeddingGemma bank's load: 8 s a member, 169 s for 21. The files hold the same values, and
    `check_compatible` has already checked that every member's files hold the same names, shapes
    and dtypes; which file key is which model tensor is learnt from the first member, and trusted
    only when it gives back exactly what loading that member gave (else members load as models).
    """

    names: dict[tuple[str, str], str]  # (module folder, file key) -> state_dict name
    targets: dict[str, torch.Tensor]

    @classmethod
    def checked(cls, first: Path, targets: list[_Target]) -> SavedTensors | None:
        import torch

        wanted = {t.name: t.value for t in targets}
        names: dict[tuple[str, str], str] = {}
        for module, folder, keys in _saved_keys(first):
            for key in keys:
                name = next((n for n in (f"{module}.{key}", f"{module}.model.{key}", f"{module}.auto_model.{key}")
                             if n in wanted), None)
                if name is not None:
                    names[(folder, key)] = name
        if set(names.values()) != set(wanted):
            return None
        reader = cls(names, wanted)
        state = reader.read(first)
        if state is None or any(not torch.equal(state[n].to(v.device), v) for n, v in wanted.items()):
            return None
        return reader

    def read(self, path: Path) -> dict | None:
        """The member's tensors by name (in the loaded model's dtypes), or None when one is missing."""
        from safetensors import safe_open

        state = {}
        for folder in sorted({folder for folder, _ in self.names}):
            for file in sorted((path / folder).glob("*.safetensors")):
                with safe_open(str(file), framework="pt") as handle:
                    for key in handle.keys():
                        name = self.names.get((folder, key))
                        if name is not None:
                            state[name] = handle.get_tensor(key).to(self.targets[name].dtype)
        return state if set(state) == set(self.targets) else None


def _saved_keys(folder: Path):
    """(module name, module folder, safetensors keys) of each module of a sentence-transformers folder."""
    import json

    from safetensors import safe_open

    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        return
    for module in modules:
        sub = module.get("path") or ""
        for file in sorted((folder / sub).glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as handle:
                yield module.get("name", str(module.get("idx"))), sub, list(handle.keys())


def checked_shares(weights: Sequence[float], count: int) -> list[float]:
    """Weights as shares summing to 1; one clear line when they cannot be."""
    values = [float(w) for w in weights]
    if len(values) != count:
        raise SoupkitError(f"merge weights: {len(values)} values for {count} models; give one per model")
    if not all(math.isfinite(w) and w >= 0 for w in values) or sum(values) <= 0:
        raise SoupkitError(f"merge weights are shares: finite, >= 0 and not all 0, got {values}")
    total = sum(values)
    return [w / total for w in values]


def _load(path: Path, device: str | None):
    from sentence_transformers import SentenceTransformer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return SentenceTransformer(str(path), device=device, model_kwargs={"use_safetensors": True})
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SoupkitError(f"cannot load model folder {path}: {first}") from None


def _floating_targets(model) -> list[_Target]:
    """The model's saved floating parameters and buffers, each once (tied weights share one tensor)."""
    saved = set(model.state_dict())  # non-persistent buffers (rotary tables) come from the config
    seen: set[int] = set()
    targets = []
    named = list(model.named_parameters()) + list(model.named_buffers())
    for name, value in named:
        if name not in saved or not value.is_floating_point() or value.data_ptr() in seen:
            continue
        seen.add(value.data_ptr())
        if not value.is_contiguous():
            raise SoupkitError(f"tensor '{name}' of {type(model).__name__} is not contiguous; cannot merge in place")
        targets.append(_Target(name, value.data, None))
    return targets


def _weighted_rows(target: _Target, vector: torch.Tensor) -> None:
    import torch

    flat = target.value.view(-1)
    if target.stack.dtype in (torch.float32, torch.float64):
        torch.mv(target.stack.t(), vector.to(target.stack.dtype), out=flat)  # BLAS gemv, memory-bound
        return
    # bf16/fp16: sum in float32 (shares in bf16 would keep 3 digits), one cached chunk at a time
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        stop = min(flat.numel(), start + CHUNK_ELEMENTS)
        flat[start:stop].copy_(vector @ target.stack[:, start:stop].float())
