"""Where a sentence-transformers model's transformer layers, embeddings and final norm are.

The one place that knows the backbones soupkit supports (Gemma3TextModel for EmbeddingGemma,
BertModel for all-MiniLM-L6-v2 and its family) well enough to run them a slice at a time:
`embed` (token ids to the input of layer 0), `layer_inputs` (what every layer call needs besides
the hidden states: the attention masks, and Gemma3's rotary tables), `run` (layers start..stop)
and `finish` (the final norm). Each is built exactly as the backbone's own forward builds it, so
embeddings -> run(0, L) -> finish equals the backbone's forward (tests/test_trunk_cache.py).

For `finetune.train: top:<k>`, `frozen_names` are the backbone tensors below the top k layers
and the final norm (embeddings, lower layers, an unused BERT pooler), and `bottom_names` those the
trunk's output depends on (embeddings and lower layers): what the trunk cache's digest covers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from soupkit.errors import SoupkitError

if TYPE_CHECKING:
    import torch

ARCHITECTURES = ("Gemma3TextModel", "BertModel")


@dataclass
class Backbone:
    """A sentence-transformers model's transformer (its first module), by architecture."""

    kind: str  # "gemma3" or "bert"
    module: object  # the transformers model (Gemma3TextModel, BertModel)
    prefix: str  # the backbone's parameter names inside the SentenceTransformer ("0.auto_model.")

    @property
    def layers(self):
        return self.module.layers if self.kind == "gemma3" else self.module.encoder.layer

    @property
    def layer_count(self) -> int:
        return len(self.layers)

    @property
    def layers_prefix(self) -> str:
        return self.prefix + ("layers." if self.kind == "gemma3" else "encoder.layer.")

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The hidden states entering layer 0 (Gemma3: the scaled token embeddings; BERT: token,
        position and type embeddings after their LayerNorm)."""
        if self.kind == "gemma3":
            return self.module.embed_tokens(input_ids)
        return self.module.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, cache_length=0)

    def layer_inputs(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        """Per-layer-type keyword arguments of a layer call, as the backbone's forward builds them
        for a batch of `hidden` [batch, length, width] with `attention_mask` [batch, length]."""
        import torch

        if self.kind == "bert":
            mask, _ = self.module._create_attention_masks(
                attention_mask=attention_mask, encoder_attention_mask=None, embedding_output=hidden,
                encoder_hidden_states=None, cache=None, position_ids=None)
            return {"attention_mask": mask}
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
        from transformers.models.gemma3.modeling_gemma3 import _bidirectional_window_overlay

        config = self.module.config
        position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        mask_kwargs = {"config": config, "inputs_embeds": hidden, "attention_mask": attention_mask, "cache": None,
                       "position_ids": position_ids}
        sliding_kwargs = dict(mask_kwargs)
        if config.use_bidirectional_attention:
            mask_kwargs["or_mask_function"] = lambda *args: torch.tensor(True, dtype=torch.bool)
            sliding_kwargs["or_mask_function"] = _bidirectional_window_overlay(config.sliding_window)
        masks = {"full_attention": create_causal_mask(**mask_kwargs),
                 "sliding_attention": create_sliding_window_causal_mask(**sliding_kwargs)}
        rotary = {t: self.module.rotary_emb(hidden, position_ids, t) for t in set(config.layer_types)}
        return {"masks": masks, "rotary": rotary, "position_ids": position_ids}

    def run(self, hidden: torch.Tensor, inputs: dict, start: int, stop: int) -> torch.Tensor:
        """Layers start..stop-1 applied to `hidden`, called as the backbone's forward calls them."""
        for index in range(start, stop):
            layer = self.layers[index]
            if self.kind == "bert":
                hidden = layer(hidden, inputs["attention_mask"], None, encoder_attention_mask=None, cache=None)
            else:
                kind = self.module.config.layer_types[index]
                hidden = layer(hidden, attention_mask=inputs["masks"][kind], position_embeddings=inputs["rotary"][kind],
                               position_ids=inputs["position_ids"], cache=None)
        return hidden

    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        """The final norm after the last layer (Gemma3's `norm`; BERT's layers end in their own)."""
        return self.module.norm(hidden) if self.kind == "gemma3" else hidden

    def embedding_prefixes(self) -> tuple[str, ...]:
        return (self.prefix + ("embed_tokens." if self.kind == "gemma3" else "embeddings."),)

    def bottom_names(self, model, k: int) -> list[str]:
        """Names (in `model.state_dict()`) of the tensors the input of layer L-k depends on."""
        first_top = self.layer_count - k
        lower = tuple(f"{self.layers_prefix}{i}." for i in range(first_top))
        return [n for n in model.state_dict() if n.startswith(self.embedding_prefixes() + lower)]

    def frozen_names(self, model, k: int) -> list[str]:
        """Names of the backbone's tensors that `top:k` does not train: all but the top k layers
        and the final norm. Every module after the backbone (pooling, Dense heads) trains."""
        first_top = self.layer_count - k
        trained = tuple(f"{self.layers_prefix}{i}." for i in range(first_top, self.layer_count))
        if self.kind == "gemma3":
            trained += (self.prefix + "norm.",)
        return [n for n in model.state_dict() if n.startswith(self.prefix) and not n.startswith(trained)]


def backbone_of(model) -> Backbone:
    """The transformer of a SentenceTransformer, or one line saying it is not one soupkit can split."""
    first = model[0] if len(model) else None
    module = getattr(first, "auto_model", None)
    name = type(module).__name__
    if name not in ARCHITECTURES:
        raise SoupkitError(f"finetune.train top:<k> needs a {' or '.join(ARCHITECTURES)} transformer; "
                           f"this model's first module is {name}")
    prefix = next((f"{n}." for n, m in model.named_modules() if m is module), "0.auto_model.")
    return Backbone("gemma3" if name == "Gemma3TextModel" else "bert", module, prefix)


def check_top(k: int, layer_count: int, where: str) -> None:
    """One line when `top:k` cannot be trained on a model of `layer_count` layers."""
    if not 1 <= k <= layer_count:
        raise SoupkitError(f"finetune.train: top:{k} asks for {k} layers, but {where} has {layer_count} "
                           f"transformer layers; use top:1 to top:{layer_count}, or all")


def folder_layer_count(folder: Path) -> int | None:
    """The transformer layer count written in a sentence-transformers folder (its first module's
    config.json), read without loading the model; None when the folder does not say."""
    folder = Path(folder)
    try:
        modules = json.loads((folder / "modules.json").read_text())
        first = folder / (modules[0].get("path") or "") if modules else folder
        config = json.loads((first / "config.json").read_text())
    except (OSError, ValueError, KeyError, IndexError, AttributeError):
        return None
    config = config.get("text_config", config)
    count = config.get("num_hidden_layers")
    return count if isinstance(count, int) else None
