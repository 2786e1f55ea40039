"""Build an EmbeddingGemma-shaped sentence-transformers model folder offline (random init).

`google/embeddinggemma-300m` cannot be downloaded here, but every soupkit stage (search, finetune,
probes, merge, soup) must work on its architecture, which differs from MiniLM in ways that break
naive code: a Gemma3 backbone with bidirectional attention and mixed sliding/full attention layers,
two bias-free Dense heads after mean pooling, and task prompts. This module rebuilds that shape:

    Transformer(Gemma3TextModel) -> Pooling(mean) -> Dense(d, 4d) -> Dense(4d, d) -> Normalize

"tiny" is for tests (a few seconds to build, ~0.4M parameters); "full" has the published 300M
shape (ARCHITECTURES["full"], ../shared/NOTES.md) for speed and memory benchmarks. Neither has
Google's weights or tokenizer: the tokenizer is trained offline (see `_tokenizer.py`), and in the
full shape it covers only the first rows of the 262,144-row embedding matrix.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

from soupkit.atomic import atomic_dir
from soupkit.errors import SoupkitError
from soupkit.prompts import EMBEDDINGGEMMA_PROMPTS

Size = Literal["tiny", "full"]

# Gemma3TextConfig arguments per size; tokenizer_vocab is the trained tokenizer's size.
# use_bidirectional_attention halves the sliding window internally and writes the original value
# back on save (512 -> 257 in memory, 512 in config.json): do not "fix" it.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "query_pre_attn_scalar": 32,
        # Small enough that texts longer than ~8 tokens exercise the sliding-window mask.
        "sliding_window": 16,
        # The default pattern puts full attention on every 6th layer only: a 2-layer model needs it spelled out.
        "layer_types": ["sliding_attention", "full_attention"],
    },
    "full": {
        "vocab_size": 262_144,
        "hidden_size": 768,
        "intermediate_size": 1152,
        "num_hidden_layers": 24,
        "num_attention_heads": 3,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 512,
        "layer_types": [("full_attention" if (i + 1) % 6 == 0 else "sliding_attention") for i in range(24)],
    },
}
TOKENIZER_VOCAB = 4096
MAX_SEQ_LENGTH = 2048
MANIFEST = "soupkit_model.json"


def gemma3_config(size: Size, vocab_size: int):
    """The backbone config: EmbeddingGemma's Gemma3 text settings at the given size."""
    from transformers import Gemma3TextConfig

    arch = {"vocab_size": vocab_size, **ARCHITECTURES[size]}
    return Gemma3TextConfig(
        **arch,
        max_position_embeddings=MAX_SEQ_LENGTH,
        use_bidirectional_attention=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )


def build_embeddinggemma(out_dir: str | Path, size: Size = "tiny", seed: int = 0) -> Path:
    """Write an EmbeddingGemma-shaped SentenceTransformer folder to `out_dir` and return its path.

    The folder reloads with `SentenceTransformer(out_dir)` to the same modules, carries
    EmbeddingGemma's prompts (no default prompt, as the published model) and a `soupkit_model.json`
    saying what it is. The same size and seed give the same weights.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import Gemma3TextModel

    from soupkit.models._tokenizer import CORPUS, train_gemma_style_tokenizer

    if size not in ARCHITECTURES:
        raise SoupkitError(f"unknown EmbeddingGemma size '{size}'; choose one of: {', '.join(ARCHITECTURES)}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SoupkitError(f"{out} is not empty; choose a new folder for the model")
    tokenizer = train_gemma_style_tokenizer(TOKENIZER_VOCAB, model_max_length=MAX_SEQ_LENGTH)
    config = gemma3_config(size, vocab_size=len(tokenizer))
    dim = config.hidden_size

    # fork_rng: building a model must not move the caller's global RNG (tests, search trials).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = Gemma3TextModel(config)
        heads = [
            Pooling(dim, "mean"),
            # EmbeddingGemma's heads: no bias, no activation (Dense defaults to bias + Tanh).
            Dense(dim, 4 * dim, bias=False, activation_function=None),
            Dense(4 * dim, dim, bias=False, activation_function=None),
            Normalize(),
        ]
    out.parent.mkdir(parents=True, exist_ok=True)
    # sentence-transformers' Transformer loads from a folder (AutoConfig -> Gemma3TextConfig ->
    # AutoModel -> Gemma3TextModel), so the backbone goes through a scratch folder first.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".embeddinggemma-") as scratch:
        backbone.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        del backbone
        model = SentenceTransformer(
            modules=[Transformer(scratch), *heads],
            prompts=dict(EMBEDDINGGEMMA_PROMPTS),
            default_prompt_name=None,
            similarity_fn_name="cosine",
            device="cpu",
        )
        with atomic_dir(out) as staging:  # a full disk or Ctrl-C leaves no half-written model
            model.save(str(staging))
            _write_manifest(staging, size, seed, CORPUS, sum(p.numel() for p in model.parameters()))
    return out


def _write_manifest(out: Path, size: str, seed: int, corpus: str, parameters: int) -> None:
    """Every output folder explains itself: what built it and that its weights are random."""
    manifest = {
        "built_by": "soupkit.models.build_embeddinggemma",
        "architecture": "EmbeddingGemma (Gemma3TextModel, bidirectional) -> mean -> Dense -> Dense -> Normalize",
        "size": size,
        "seed": seed,
        "parameters": parameters,
        "weights": "random initialisation, not google/embeddinggemma-300m",
        "tokenizer": f"BPE, {TOKENIZER_VOCAB} tokens, trained on {corpus}",
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
