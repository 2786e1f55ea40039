"""Shared fixtures: a tiny real BERT sentence-transformers model built once per session.

The vocabulary is the bundled MiniLM's real WordPiece vocabulary; the weights are random and tiny
(hidden 32, 2 layers), so finetunes and probes run in a fraction of a second.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_tiny_bert(out: Path, seed: int = 0, prompts: dict[str, str] | None = None) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from soupkit.base_model import bundled_model_path

    torch.manual_seed(seed)
    vocab = bundled_model_path() / "vocab.txt"
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
    )
    backbone_dir = out.parent / f".{out.name}-backbone"
    BertModel(config).save_pretrained(backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    transformer = Transformer(str(backbone_dir), max_seq_length=64)
    pooling = Pooling(32, pooling_mode="mean")
    dense = Dense(32, 16, bias=False, activation_function=torch.nn.Identity())
    model = SentenceTransformer(modules=[transformer, pooling, dense, Normalize()], device="cpu",
                                prompts=prompts or {})
    model.save(str(out))
    shutil.rmtree(backbone_dir)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny sentence-transformers model folder; copy it (`tiny_model`) before changing it."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture
def tiny_model(tiny_model_dir, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(tiny_model_dir, dst)
    return dst
