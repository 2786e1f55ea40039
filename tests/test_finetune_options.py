"""Finetune options for big-vocabulary models: frozen token embeddings, gradient checkpointing."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from soupkit.models import build_embeddinggemma

EMBEDDING = "embed_tokens.weight"


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory):
    return build_embeddinggemma(tmp_path_factory.mktemp("tiny-gemma"), size="tiny", seed=0)


@pytest.fixture(scope="module")
def families(gemma_dir, tiny_recipe):
    from soupkit.data.load import load_families

    return load_families(tiny_recipe(gemma_dir))


@pytest.fixture(scope="module")
def finetune(gemma_dir, families, tiny_recipe):
    """`finetune(out, **finetune settings)`: the tiny EmbeddingGemma finetuned; (model, tensors, result)."""
    from soupkit.base_model import load_model
    from soupkit.train.finetune import finetune_on_mixture

    def run(out, **options):
        recipe = tiny_recipe(gemma_dir, **options)
        model = load_model(str(gemma_dir), "cpu")
        weights = {"medical-icd10": 0.5, "medical-icd10-chapters": 0.5}
        result = finetune_on_mixture(model, families, weights, recipe.finetune, out, seed=0, bf16=False)
        return model, load_file(out / "model.safetensors"), result

    return run


@pytest.mark.slow
def test_frozen_token_embeddings_stay_and_the_rest_trains(gemma_dir, finetune, tmp_path):
    original = load_file(gemma_dir / "model.safetensors")
    model, tensors, _ = finetune(tmp_path / "frozen", freeze_token_embeddings=True)
    assert torch.equal(tensors[EMBEDDING], original[EMBEDDING])
    changed = [k for k in original if k != EMBEDDING and not torch.equal(original[k], tensors[k])]
    assert len(changed) >= len(original) // 2
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert [n.split(".", 2)[-1] for n in frozen] == ["embed_tokens.weight"]
    _, trained, _ = finetune(tmp_path / "all")
    assert not torch.equal(trained[EMBEDDING], original[EMBEDDING])  # by default every parameter trains


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_model(gemma_dir, finetune, tmp_path):
    _, plain, a = finetune(tmp_path / "plain", freeze_token_embeddings=True)
    model, ckpt, b = finetune(tmp_path / "ckpt", freeze_token_embeddings=True,
                              gradient_checkpointing=True)
    assert a.losses == pytest.approx(b.losses, rel=1e-5)
    assert all(torch.allclose(plain[k], ckpt[k], atol=1e-6) for k in plain)
    from soupkit.train.finetune import is_checkpointing

    assert is_checkpointing(model[0].auto_model)


def test_freezing_a_model_without_token_embeddings_fails_clearly(gemma_dir, tiny_recipe):
    from soupkit.train.finetune import FinetuneFailed, prepare_training

    with pytest.raises(FinetuneFailed, match="no token-embedding matrix"):
        prepare_training(torch.nn.Sequential(torch.nn.Linear(2, 2)), tiny_recipe(gemma_dir, freeze_token_embeddings=True).finetune)


def test_base_weights_share_only_the_frozen_matrix(gemma_dir, tiny_recipe):
    from soupkit.base_model import load_model
    from soupkit.train.finetune import base_weights, token_embeddings

    model = load_model(str(gemma_dir), "cpu")
    spec = tiny_recipe(gemma_dir, freeze_token_embeddings=True).finetune
    state = base_weights(model, spec)
    shared = [k for k, v in state.items() if v.data_ptr() == model.state_dict()[k].data_ptr()]
    assert shared == [k for k, v in model.state_dict().items() if v.data_ptr() == token_embeddings(model).data_ptr()]
    assert len(shared) == 1


@pytest.mark.slow
def test_a_finetuned_model_keeps_its_own_sequence_length(gemma_dir, finetune, tmp_path):
    from soupkit.base_model import load_model

    model, _, _ = finetune(tmp_path / "m")  # trained at the recipe's 32 tokens
    own = load_model(str(gemma_dir), "cpu").max_seq_length
    assert own > 32 and model.max_seq_length == own
    assert load_model(str(tmp_path / "m"), "cpu").max_seq_length == own


def test_finetune_by_base_applies_to_that_model_only(tmp_path):
    from soupkit.config import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        "name: r\nbase: google/embeddinggemma-300m\nfamilies: [medical-icd10]\n"
        "finetune: {learning_rate: 5.0e-5, loss: {scale: 20, hard_negative_alpha: 5}}\n"
        "finetune_by_base:\n  google/embeddinggemma-300m: {learning_rate: 1.0e-5, freeze_token_embeddings: true,"
        " loss: {scale: 30}}\n"
    )
    from soupkit.models.fetch import same_model

    recipe = load_recipe(path)
    for base in ("google/embeddinggemma-300m", "embeddinggemma-300m"):
        tuned = recipe.model_copy(update={"base": base}).for_base(same_model)
        assert tuned.finetune.learning_rate == 1e-5 and tuned.finetune.freeze_token_embeddings
        assert tuned.finetune.loss.scale == 30 and tuned.finetune.loss.hard_negative_alpha == 5
        assert tuned.finetune_by_base == {} and tuned.for_base(same_model) == tuned
    assert recipe.model_copy(update={"base": "embeddinggemma-300m"}).for_base().finetune == recipe.finetune
    other = recipe.model_copy(update={"base": "bundled:all-MiniLM-L6-v2"}).for_base(same_model)
    assert other.finetune == recipe.finetune


@pytest.mark.parametrize(("entry", "message"), [
    ("{learning_rat: 1.0e-5}", "finetune_by_base.m: unknown key 'learning_rat'"),
    ("{learning_rate: -1}", "finetune_by_base.m.learning_rate: Input should be greater than 0"),
    ("{loss: {scale: 0}}", "finetune_by_base.m.loss.scale: Input should be greater than 0"),
])
def test_finetune_by_base_is_checked_when_the_recipe_loads(tmp_path, entry, message):
    from soupkit.config import load_recipe
    from soupkit.errors import SoupkitError

    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\nfamilies: [medical-icd10]\nfinetune_by_base:\n  m: {entry}\n")
    with pytest.raises(SoupkitError, match=message):
        load_recipe(path)


@pytest.mark.slow  # a search through the command line: it trains
def test_search_applies_the_base_settings_then_the_options(tiny_model, tiny_recipe, tmp_path):
    """Recipe file < finetune_by_base for its base < command-line options; the run records the result."""
    import yaml
    from click.testing import CliRunner

    from soupkit.cli import main

    data = tiny_recipe(tiny_model, steps=2).model_dump(mode="json")
    data["search"] = {"budget": 1, "n_startup_trials": 1}
    data["finetune_by_base"] = {str(tiny_model): {"learning_rate": 1e-5, "freeze_token_embeddings": True}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["search", "--recipe", str(path), "--out", str(out), "--quiet",
                                       "--train-token-embeddings", "--gradient-checkpointing"])
    assert result.exit_code == 0, result.output
    ran = yaml.safe_load((out / "recipe.yaml").read_text())
    assert ran["finetune"]["learning_rate"] == 1e-5  # from finetune_by_base
    assert ran["finetune"]["freeze_token_embeddings"] is False  # the option wins
    assert ran["finetune"]["gradient_checkpointing"] is True and ran["finetune_by_base"] == {}
