"""The cached forward of a `top:<k>` model: cached trunk output -> the top k layers -> the heads.

`attach_trunk(model, k)` replaces the forward of the model's transformer module (its first
sentence-transformers module) with one that takes, for each text of a batch, the hidden states
entering layer L-k from the trunk cache (soupkit.models.trunk_cache), computing and storing the
missing ones, and runs only the top k layers and the final norm; pooling, the Dense heads and
normalisation run as before. Training steps (gradients reach only the top) and `model.encode`
(probes, soups, ingredients, adapt proposals) both go through it, so callers change nothing.

The frozen bottom always runs in inference mode (no dropout), so its output is a function of the
text alone. Numbers with the cache equal those without it within float32 rounding (the bottom of
a row is computed in another batch, so BLAS may sum in another order): tests/test_trunk_cache.py.
A model only joins the cache of its own bottom (the digest of its frozen tensors): a model whose
frozen weights differ from the base's gets another digest, and `create=False` (probe passes of
models loaded from folders) joins only a cache that a finetune of that base already made.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from soupkit.models.layers import Backbone, backbone_of, check_top
from soupkit.models.trunk_cache import SUFFIX, TrunkCache, cache_root

if TYPE_CHECKING:
    import numpy
    import torch

BINDING = "_soupkit_trunk"  # the attribute of the transformer module that holds its binding
DTYPES = ("float32", "bfloat16", "float16", "float64")


@dataclass
class TrunkBinding:
    """A model's link to the cache of its frozen bottom, with hit and miss counts."""

    backbone: Backbone
    k: int
    digest: str
    cache: TrunkCache
    hits: int = 0
    misses: int = 0
    output_name: str = "token_embeddings"
    _original_forward: object = field(default=None, repr=False)

    @property
    def first_top(self) -> int:
        return self.backbone.layer_count - self.k

    def trunk_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """[batch, length, width] hidden states entering layer L-k; zeros at padding.

        Whole-batch tensor work (one mask, one copy of the ids to numpy, one scatter into the
        padded batch): a per-row loop of masked indexing cost about a tenth of a MiniLM `top:2` step."""
        import torch

        real = attention_mask.bool()
        lengths = real.sum(dim=1).tolist()
        tag = _precision(input_ids.device)
        ids = input_ids[real].to(torch.int64).cpu().numpy()
        types = None if token_type_ids is None else token_type_ids[real].to(torch.int64).cpu().numpy()
        ends = list(itertools.accumulate(lengths))
        keys = [self._key(ids[end - n:end], None if types is None else types[end - n:end], tag)
                for n, end in zip(lengths, ends)]
        found = self.cache.get_many(keys)
        first_of: dict[bytes, int] = {}  # each missing text computed once, however often the batch holds it
        for b, key in enumerate(keys):
            if key not in found:
                first_of.setdefault(key, b)
        missing = list(first_of.values())
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        fresh: dict[bytes, torch.Tensor] = {}
        if missing:
            computed = self._bottom(input_ids[missing], attention_mask[missing],
                                    None if token_type_ids is None else token_type_ids[missing])
            parts = computed[real[missing]].split([lengths[b] for b in missing])
            fresh = {keys[b]: part for b, part in zip(missing, parts)}
            self.cache.put_many({key: _encode(value) for key, value in fresh.items()})
        rows = [fresh[key] if key in fresh else _decode(found[key]) for key in keys]
        flat = torch.cat(rows).to(input_ids.device)
        hidden = torch.zeros((*input_ids.shape, flat.shape[-1]), dtype=flat.dtype, device=input_ids.device)
        hidden[real] = flat  # rows in batch order fill the real positions in the same (row-major) order
        return hidden

    def _key(self, ids: numpy.ndarray, types: numpy.ndarray | None, tag: str) -> bytes:
        """The row's cache key: the layer, the precision and its int64 token ids (and token types
        when any is non-zero)."""
        digest = hashlib.blake2b(f"{self.first_top}|{tag}|".encode(), digest_size=20)
        digest.update(ids.tobytes())
        if types is not None and bool(types.any()):
            digest.update(b"|types|" + types.tobytes())
        return digest.digest()

    def _bottom(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        """Embeddings and layers 0..L-k-1, in inference mode (no dropout, no gradient)."""
        import torch

        module = self.backbone.module
        was_training = module.training
        module.train(False)
        try:
            with torch.no_grad():
                hidden = self.backbone.embed(input_ids, token_type_ids)
                inputs = self.backbone.layer_inputs(hidden, attention_mask)
                return self.backbone.run(hidden, inputs, 0, self.first_top)
        finally:
            module.train(was_training)

    def forward(self, features: dict, **kwargs) -> dict:
        """The transformer module's forward, with the bottom read from the cache."""
        mask = features["attention_mask"]
        hidden = self.trunk_states(features["input_ids"], mask, features.get("token_type_ids"))
        inputs = self.backbone.layer_inputs(hidden, mask)
        hidden = self.backbone.run(hidden, inputs, self.first_top, self.backbone.layer_count)
        features[self.output_name] = self.backbone.finish(hidden)
        return features


def bottom_digest(model, backbone: Backbone, k: int) -> str:
    """A digest of the tensors layer L-k's input depends on (names, dtypes, shapes and bytes):
    one pass over them, once per binding; any change to a frozen weight changes it."""
    import torch

    first_top = backbone.layer_count - k
    state = model.state_dict()
    digest = hashlib.blake2b(f"{backbone.kind}|{backbone.layer_count}|{first_top}|".encode(), digest_size=16)
    for name in sorted(backbone.bottom_names(model, k)):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def attach_trunk(model, k: int, base: str = "", create: bool = True) -> TrunkBinding | None:
    """Bind `model` to the trunk cache of its bottom for `top:k`; its forward uses it from now on.

    `create=False` binds only to a cache that already exists (a probe pass on a loaded model
    must not start a cache of its own), returning None otherwise. A model already bound with the
    same k keeps its binding: its bottom is frozen (a finetune resets it to the same values)."""
    transformer = model[0]
    current = binding_of(model)
    if current is not None and current.k == k:
        return current
    backbone = backbone_of(model)
    check_top(k, backbone.layer_count, "the model")
    digest = bottom_digest(model, backbone, k)
    path = cache_root() / f"{digest}{SUFFIX}"
    detach_trunk(model)
    if not create and not path.exists():
        return None
    base = base or str(getattr(backbone.module.config, "_name_or_path", ""))
    info = {"base": base, "architecture": type(backbone.module).__name__, "layers": str(backbone.layer_count),
            "first_cached_layer": str(backbone.layer_count - k)}
    binding = TrunkBinding(backbone, k, digest, TrunkCache(path, info=info),
                           output_name=getattr(transformer, "module_output_name", "token_embeddings"))
    if create:
        binding.cache.connection  # the file exists from now on: loaded models of this bottom may join it
    binding._original_forward = transformer.__dict__.get("forward")
    object.__setattr__(transformer, BINDING, binding)
    object.__setattr__(transformer, "forward", binding.forward)
    return binding


def binding_of(model) -> TrunkBinding | None:
    return getattr(model[0], BINDING, None) if len(model) else None


def detach_trunk(model) -> None:
    """Back to the model's own forward (no cache)."""
    binding = binding_of(model)
    if binding is None:
        return
    transformer = model[0]
    del transformer.__dict__[BINDING]
    del transformer.__dict__["forward"]
    if binding._original_forward is not None:
        object.__setattr__(transformer, "forward", binding._original_forward)
    binding.cache.close()


def _precision(device: torch.device) -> str:
    import torch

    kind = device.type
    if torch.is_autocast_enabled(kind):
        return f"autocast-{torch.get_autocast_dtype(kind)}"
    return "plain"


def _encode(tensor: torch.Tensor) -> bytes:
    import torch

    tensor = tensor.detach().contiguous().cpu()
    code = DTYPES.index(str(tensor.dtype).removeprefix("torch."))
    width = tensor.shape[-1].to_bytes(4, "little")
    return bytes([code]) + width + tensor.reshape(-1).view(torch.uint8).numpy().tobytes()


def _decode(value: bytes) -> torch.Tensor:
    import torch

    dtype = getattr(torch, DTYPES[value[0]])
    width = int.from_bytes(value[1:5], "little")
    return torch.frombuffer(bytearray(value[5:]), dtype=dtype).reshape(-1, width)


def join_trunk_cache(model, train: str, base: str = "") -> TrunkBinding | None:
    """For a probe pass on a model loaded from a folder (a soup, an adapt soup): bind it to the
    trunk cache of `train: top:<k>` when one exists for its bottom (it was made from a base whose
    frozen weights it still holds); None, and the model's own forward, otherwise."""
    from soupkit.config import top_layers
    from soupkit.errors import SoupkitError

    k = top_layers(train)
    if k is None:
        return None
    try:
        backbone = backbone_of(model)
    except SoupkitError:
        return None
    if k > backbone.layer_count:
        return None
    return attach_trunk(model, k, base, create=False)
