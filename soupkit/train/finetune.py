"""A short finetune of a sentence-transformers model on one mixture of task families.

A bare torch loop over a precomputed batch schedule (soupkit.train.batches): one family per
batch, families in proportion to the mixture, a fixed number of steps, seeded so the same seed
and mixture give the same checkpoint. The loss is the sentence-transformers-compatible
EmbeddingGemmaLoss. The result is a complete model folder, written under a temporary name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from soupkit.atomic import atomic_dir
from soupkit.base_model import autocast_context
from soupkit.config import FinetuneSpec, LossSpec
from soupkit.data.family import ASYMMETRIC_TASKS, TaskFamily
from soupkit.pause import pause_for_test
from soupkit.prompts import prompt_for
from soupkit.train.batches import Batch, plan_batches


class FinetuneFailed(RuntimeError):
    """The finetune diverged (NaN/inf loss) or could not run; the trial is marked FAIL."""


@dataclass
class FinetuneResult:
    path: Path
    seconds: float
    steps: int
    examples: int
    losses: list[float] = field(default_factory=list)

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


def build_loss(model, spec: LossSpec):
    from soupkit.train.losses import EmbeddingGemmaLoss

    dims = spec.matryoshka_dims
    full = model.get_embedding_dimension()
    if dims:
        # dims are often written for EmbeddingGemma (768/512/256/128): on a narrower model keep the
        # smaller ones and always train the model's own full width
        dims = sorted({d for d in dims if d < full} | {full}, reverse=True)
    return EmbeddingGemmaLoss(
        model,
        scale=spec.scale,
        hard_negative_alpha=spec.hard_negative_alpha,
        use_hard_negatives=spec.hard_negatives,
        mask_duplicates=spec.mask_duplicates,
        spread_out_weight=spec.spread_out_weight,
        matryoshka_dims=dims,
    )


def batch_features(model, batch: Batch, task: str, use_negatives: bool) -> list[dict]:
    """Tokenised columns (anchor, positive[, negative]) with the model's prompts for the task."""
    prompts = getattr(model, "prompts", None)
    query_prompt = prompt_for(prompts, task, "query")
    doc_prompt = prompt_for(prompts, task, "document") if task in ASYMMETRIC_TASKS else query_prompt
    columns = [
        (query_prompt, [e.anchor for e in batch.examples]),
        (doc_prompt, [e.positive for e in batch.examples]),
    ]
    if use_negatives and any(e.negative for e in batch.examples):
        # rows without a hard negative borrow the next row's positive: a true negative (batches
        # never hold two examples of one group), so the hard-negative term runs whenever any row
        # has one instead of only when all do
        positives = [e.positive for e in batch.examples]
        negatives = [e.negative or positives[(i + 1) % len(positives)] for i, e in enumerate(batch.examples)]
        columns.append((doc_prompt, negatives))
    features = []
    for prompt, texts in columns:
        # preprocess() applies the prompt the way encode() does (prompt tokens, prompt_length)
        tokens = model.preprocess(texts, prompt=prompt or None)
        features.append({k: v.to(model.device) if hasattr(v, "to") else v for k, v in tokens.items()})
    return features


def token_embeddings(model):
    """The input token-embedding matrix of the model's transformer module, or None."""
    backbone = getattr(model[0], "auto_model", None) if len(model) else None
    getter = getattr(backbone, "get_input_embeddings", None)
    embeddings = getter() if getter else None
    return getattr(embeddings, "weight", None)


def frozen_names(model, spec: FinetuneSpec) -> set[str]:
    """Names of the tensors `spec` keeps fixed: the layers below the top k (`train: top:<k>`)
    and the token-embedding matrix (`freeze_token_embeddings`)."""
    from soupkit.models.layers import backbone_of, check_top

    names: set[str] = set()
    if spec.top_layers is not None:
        backbone = backbone_of(model)
        check_top(spec.top_layers, backbone.layer_count, "the base model")
        names.update(backbone.frozen_names(model, spec.top_layers))
    if spec.freeze_token_embeddings:
        weight = token_embeddings(model)
        names.update(n for n, p in model.named_parameters() if weight is not None and p is weight)
    return names


def check_train_setting(spec: FinetuneSpec, base_folder: str) -> None:
    """One line, before anything loads or trains, when `top:<k>` asks for more layers than the
    base folder's config has (a hub id is checked once loaded, by `frozen_names`), or when the
    trunk cache's size limit ($SOUPKIT_TRUNK_CACHE_GB) is malformed."""
    from soupkit.models.layers import check_top, folder_layer_count
    from soupkit.models.trunk_cache import size_limit

    if spec.top_layers is None:
        return
    size_limit()
    count = folder_layer_count(Path(base_folder))
    if count is not None:
        check_top(spec.top_layers, count, f"the base model {base_folder}")


def base_weights(model, spec: FinetuneSpec) -> dict:
    """The state to reset the model to before each finetune: a copy of every tensor training can
    change; frozen tensors (the bottom of `top:<k>`, a frozen token-embedding matrix: on
    EmbeddingGemma 805 MB) are shared, not copied."""
    frozen = frozen_names(model, spec)
    return {k: v.detach() if k in frozen else v.detach().clone() for k, v in model.state_dict().items()}


def prepare_training(model, spec: FinetuneSpec) -> None:
    """Which parameters train (all, the top k layers and the heads, or all but the token
    embeddings), the trunk cache of a `top:<k>` model, and gradient checkpointing."""
    from soupkit.models.trunk import attach_trunk, detach_trunk

    for param in model.parameters():
        param.requires_grad_(True)
    if spec.freeze_token_embeddings and token_embeddings(model) is None:
        raise FinetuneFailed("freeze_token_embeddings: the model's first module has no token-embedding matrix")
    frozen = frozen_names(model, spec)
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    if spec.top_layers is not None:
        attach_trunk(model, spec.top_layers)
    else:
        detach_trunk(model)
    backbone = getattr(model[0], "auto_model", None)
    if spec.gradient_checkpointing:
        if not getattr(backbone, "supports_gradient_checkpointing", False):
            raise FinetuneFailed("gradient_checkpointing: the model's transformer does not support it")
        # non-reentrant: works when the inputs need no gradient (frozen embeddings)
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif is_checkpointing(backbone):
        backbone.gradient_checkpointing_disable()


def is_checkpointing(backbone) -> bool:
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # transformers 5 renamed it
        if hasattr(type(backbone), name):
            return bool(getattr(backbone, name))
    return False


def make_optimizer(params: list, spec: FinetuneSpec):
    """AdamW, fused where the parameters' device supports it (CPU and CUDA do)."""
    import torch

    if spec.fused_optimizer:
        try:
            return torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=spec.weight_decay, fused=True)
        except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
            pass
    return torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=spec.weight_decay)


def train_steps(
    model,
    loss_fn,
    batches: Iterable[Batch],
    families: Mapping[str, TaskFamily],
    spec: FinetuneSpec,
    bf16: bool,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """The optimisation loop: AdamW, linear warmup then decay, gradient clipping at 1.0."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, spec)
    warmup = int(round(spec.warmup_ratio * spec.steps))
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, spec.steps)
    device = str(model.device)
    model.train()
    losses: list[float] = []
    for step, batch in enumerate(batches, start=1):
        features = batch_features(model, batch, families[batch.family].task, spec.loss.hard_negatives)
        with autocast_context(device, bf16):
            loss = loss_fn(features, None)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FinetuneFailed(f"loss became {value} at step {step} (family '{batch.family}')")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(value)
        if on_step:
            on_step(step, value)
    model.eval()
    return losses


def finetune_on_mixture(
    model,
    families: Mapping[str, TaskFamily],
    weights: Mapping[str, float],
    spec: FinetuneSpec,
    out_dir: Path,
    seed: int,
    bf16: bool,
    extra_files: Mapping[str, str] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Finetune `model` (modified in place) and save it to `out_dir` with `extra_files` beside it."""
    import torch

    unknown = [name for name in weights if name not in families]
    if unknown:
        raise FinetuneFailed(f"mixture names family '{unknown[0]}' which the recipe does not load")
    torch.manual_seed(seed)
    batches = plan_batches(families, weights, spec.steps, spec.batch_size, seed)
    loss_fn = build_loss(model, spec.loss)
    prepare_training(model, spec)
    # training truncates to the recipe's length; the saved model keeps its own (EmbeddingGemma: 2048)
    own_length = model.max_seq_length
    model.max_seq_length = spec.max_seq_length
    start = time.perf_counter()
    examples = 0

    def counted(plan):  # the plan is lazy: count examples as they pass, never hold the batches
        nonlocal examples
        for batch in plan:
            examples += len(batch.examples)
            yield batch

    try:
        losses = train_steps(model, loss_fn, counted(batches), families, spec, bf16, on_step)
    finally:
        model.max_seq_length = own_length
    seconds = time.perf_counter() - start
    with atomic_dir(Path(out_dir)) as tmp:
        model.save(str(tmp))
        pause_for_test("finetune")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return FinetuneResult(Path(out_dir), seconds, len(losses), examples, losses)
