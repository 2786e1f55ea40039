"""The tiny EmbeddingGemma builder: the folder must reload to EmbeddingGemma's exact module stack.

Built once per session (a few seconds); tests only read it, so they share the folder.
"""

from __future__ import annotations

import json

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

from soupkit.errors import SoupkitError
from soupkit.models import build_embeddinggemma
from soupkit.prompts import EMBEDDINGGEMMA_PROMPTS

TINY_DIM = 64


@pytest.fixture(scope="session")
def tiny_embeddinggemma_dir(tmp_path_factory):
    return build_embeddinggemma(tmp_path_factory.mktemp("tiny-embeddinggemma"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_embeddinggemma(tiny_embeddinggemma_dir):
    return SentenceTransformer(str(tiny_embeddinggemma_dir), device="cpu")


def test_reload_gives_embeddinggemma_module_stack(tiny_embeddinggemma):
    assert [type(m) for m in tiny_embeddinggemma] == [Transformer, Pooling, Dense, Dense, Normalize]


def test_backbone_is_bidirectional_gemma3_with_full_and_sliding_layers(tiny_embeddinggemma):
    from transformers import Gemma3TextModel

    backbone = tiny_embeddinggemma[0].model
    assert isinstance(backbone, Gemma3TextModel)
    assert backbone.config.use_bidirectional_attention is True
    assert set(backbone.config.layer_types) == {"sliding_attention", "full_attention"}
    assert not any(layer.self_attn.is_causal for layer in backbone.layers)


def test_first_token_sees_later_tokens(tiny_embeddinggemma):
    """Bidirectional in fact, not only in the config: changing the last word moves the first token."""
    transformer = tiny_embeddinggemma[0]
    features = transformer.preprocess(["Cholera due to Vibrio cholerae", "Cholera due to Vibrio fever"])
    with torch.no_grad():
        tokens = transformer({k: v for k, v in features.items() if k != "modality"})["token_embeddings"]
    assert not torch.allclose(tokens[0, 0], tokens[1, 0])


def test_heads_are_mean_pooling_and_bias_free_identity_dense(tiny_embeddinggemma):
    _, pooling, up, down, _ = tiny_embeddinggemma
    assert pooling.pooling_mode == "mean"
    assert (up.in_features, up.out_features, down.in_features, down.out_features) == (
        TINY_DIM,
        4 * TINY_DIM,
        4 * TINY_DIM,
        TINY_DIM,
    )
    for dense in (up, down):
        assert dense.linear.bias is None
        assert isinstance(dense.activation_function, torch.nn.Identity)


def test_encodes_unit_vectors_of_model_width(tiny_embeddinggemma):
    assert tiny_embeddinggemma.get_embedding_dimension() == TINY_DIM
    assert tiny_embeddinggemma.max_seq_length == 2048  # EmbeddingGemma's context
    emb = tiny_embeddinggemma.encode(["Cholera", "Typhoid fever"], convert_to_tensor=True)
    assert emb.shape == (2, TINY_DIM)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


def test_prompts_are_embeddinggemmas_and_none_is_default(tiny_embeddinggemma):
    assert tiny_embeddinggemma.prompts == EMBEDDINGGEMMA_PROMPTS
    assert tiny_embeddinggemma.default_prompt_name is None


def test_prompt_name_prepends_the_prompt_text(tiny_embeddinggemma):
    with_name = tiny_embeddinggemma.encode(["a"], prompt_name="query", convert_to_tensor=True)
    spelled_out = tiny_embeddinggemma.encode([EMBEDDINGGEMMA_PROMPTS["query"] + "a"], convert_to_tensor=True)
    bare = tiny_embeddinggemma.encode(["a"], convert_to_tensor=True)
    torch.testing.assert_close(with_name, spelled_out)
    assert not torch.allclose(with_name, bare)


def test_tokenizer_wraps_texts_gemma_style(tiny_embeddinggemma):
    tokenizer = tiny_embeddinggemma.tokenizer
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) == (0, 1, 2)
    ids = tokenizer(["a", "Cholera due to Vibrio cholerae"], padding=True)["input_ids"]
    assert ids[0][0] == 2 and ids[0][2:] == [1] + [0] * (len(ids[0]) - 3)  # <bos> a <eos> <pad>...
    assert ids[1][0] == 2 and ids[1][-1] == 1
    assert tokenizer.unk_token_id not in tokenizer(EMBEDDINGGEMMA_PROMPTS["query"])["input_ids"]


def test_padding_does_not_change_an_embedding(tiny_embeddinggemma):
    alone = tiny_embeddinggemma.encode(["Cholera"], convert_to_tensor=True)
    longer = "Other respiratory tuberculosis of the nose"
    batched = tiny_embeddinggemma.encode(["Cholera", longer], convert_to_tensor=True)
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=1e-5)


def test_sliding_window_survives_save_and_reload(tiny_embeddinggemma, tiny_embeddinggemma_dir, tmp_path):
    """Gemma3TextConfig halves the window in memory (16 -> 9) and must write 16 back, every time."""
    assert json.loads((tiny_embeddinggemma_dir / "config.json").read_text())["sliding_window"] == 16
    assert tiny_embeddinggemma[0].model.config.sliding_window == 9
    tiny_embeddinggemma.save(str(tmp_path / "resaved"))
    assert json.loads((tmp_path / "resaved" / "config.json").read_text())["sliding_window"] == 16


def test_folder_explains_itself(tiny_embeddinggemma_dir):
    manifest = json.loads((tiny_embeddinggemma_dir / "soupkit_model.json").read_text())
    assert manifest["size"] == "tiny" and manifest["seed"] == 0
    assert "random" in manifest["weights"]


def test_refuses_a_non_empty_folder(tiny_embeddinggemma_dir):
    with pytest.raises(SoupkitError, match="not empty"):
        build_embeddinggemma(tiny_embeddinggemma_dir)


def test_unknown_size_is_an_error(tmp_path):
    with pytest.raises(SoupkitError, match="unknown EmbeddingGemma size 'huge'"):
        build_embeddinggemma(tmp_path / "m", size="huge")  # type: ignore[arg-type]


def test_same_seed_same_weights(tiny_embeddinggemma_dir, tmp_path):
    from safetensors.torch import load_file

    again = build_embeddinggemma(tmp_path / "again", size="tiny", seed=0)
    for name in ("model.safetensors", "2_Dense/model.safetensors", "3_Dense/model.safetensors"):
        first, second = load_file(tiny_embeddinggemma_dir / name), load_file(again / name)
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first)
