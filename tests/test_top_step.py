"""What keeps a warm `top:<k>` training step cheap: it runs only the top layers (the bottom comes
from the trunk cache, the embeddings never run) and the optimizer and clipping hold only the
parameters that train. A regression in either still gives the right numbers, only slowly, so the
equality tests of tests/test_trunk_cache.py would not see it."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from soupkit.data.family import TaskFamily, TrainExample

pytestmark = pytest.mark.usefixtures("trunk_home")  # a fresh $SOUPKIT_HOME: each test its own cache


def family() -> TaskFamily:
    examples = [TrainExample(f"symptom {i} of disease {i % 7}", f"disease {i} is described here", group=f"g{i}")
                for i in range(24)]
    return TaskFamily("a", "retrieval", "test", examples, None)


def steps(model, spec, families) -> list[float]:
    """The finetune's loop (soupkit.train.finetune.train_steps) as `finetune_on_mixture` runs it,
    without writing a checkpoint: a few steps of a tiny model, a fast test."""
    from soupkit.train.batches import plan_batches
    from soupkit.train.finetune import build_loss, prepare_training, train_steps

    loss_fn = build_loss(model, spec.loss)
    prepare_training(model, spec)
    batches = plan_batches(families, {name: 1.0 for name in families}, spec.steps, spec.batch_size, 0)
    return train_steps(model, loss_fn, batches, families, spec, bf16=False)


def test_a_warm_top_k_step_runs_only_the_top_and_optimises_only_what_trains(model_dir, monkeypatch):
    from soupkit.base_model import load_model
    from soupkit.config import FinetuneSpec
    from soupkit.models.layers import backbone_of
    from soupkit.models.trunk import binding_of
    from soupkit.train import finetune
    from soupkit.train.finetune import base_weights

    model = load_model(str(model_dir), "cpu")
    spec = FinetuneSpec(train="top:1", steps=3, batch_size=4, bf16=False)
    families = {"a": family()}
    state = base_weights(model, spec)
    steps(model, spec, families)  # a first trial fills the cache
    binding = binding_of(model)
    misses = binding.misses
    assert misses > 0

    backbone = backbone_of(model)
    calls: Counter = Counter()
    for index, layer in enumerate(backbone.layers):
        layer.register_forward_hook(lambda module, args, output, index=index: calls.update([index]))
    embeddings = backbone.module.embed_tokens if backbone.kind == "gemma3" else backbone.module.embeddings
    embeddings.register_forward_hook(lambda module, args, output: calls.update(["embeddings"]))
    held = []
    make_optimizer = finetune.make_optimizer
    monkeypatch.setattr(finetune, "make_optimizer", lambda params, s: held.append(list(params)) or make_optimizer(params, s))

    model.load_state_dict(state)
    assert all(math.isfinite(loss) for loss in steps(model, spec, families))  # a later trial: warm
    assert binding_of(model) is binding and binding.misses == misses  # the same texts: all from the cache
    assert set(calls) == {backbone.layer_count - 1}  # the top layer ran; the bottom and the embeddings never
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert [id(p) for p in held[0]] == [id(p) for p in trainable]
    assert 0 < sum(p.numel() for p in trainable) < sum(p.numel() for p in model.parameters()) / 2
