"""The EmbeddingGemma finetuning objective as a sentence-transformers-compatible loss.

Contrastive (InfoNCE) over in-batch positives plus one hard negative per query, the hard
negative's logit weighted by w = exp(alpha * stopgrad(sim(q, p-))); in-batch duplicates (same
query or same positive text) are masked as false negatives; a spread-out regulariser (second
moment of the global orthogonal regulariser) on queries and on positives. Both are applied at
every Matryoshka dimension and summed. Each part can be switched off from the recipe.

The module follows sentence-transformers' loss contract, `forward(sentence_features, labels)`, so
the same object trains in soupkit's loop and in `SentenceTransformerTrainer`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soupkit.config import LossSpec

DEFAULTS = LossSpec()  # the recipe's defaults are the loss's: one place for them


def duplicate_mask(ids: Tensor) -> Tensor:
    """[B, B] bool, True where rows i != j carry the same token ids (the same text)."""
    same = (ids.unsqueeze(0) == ids.unsqueeze(1)).all(dim=-1)
    return same & ~torch.eye(len(ids), dtype=torch.bool, device=ids.device)


def contrastive_loss(
    q: Tensor,
    p: Tensor,
    n: Tensor | None,
    scale: float,
    hard_negative_alpha: float,
    false_negatives: Tensor | None = None,
) -> Tensor:
    """InfoNCE of unit vectors q[i] against p[i], negatives p[j!=i] and the weighted n[i].

    The hard negative's weight w_i = exp(alpha * sim(q_i, n_i)) enters the denominator as
    w_i * exp(scale * sim), i.e. its logit gains log w_i = alpha * sim (detached).
    """
    logits = scale * q @ p.T
    if false_negatives is not None:
        logits = logits.masked_fill(false_negatives, float("-inf"))
    if n is not None:
        sim_n = (q * n).sum(dim=-1)
        hard = scale * sim_n + hard_negative_alpha * sim_n.detach()
        logits = torch.cat([logits, hard.unsqueeze(1)], dim=1)
    targets = torch.arange(len(q), device=q.device)
    return F.cross_entropy(logits, targets)


def spread_out_loss(x: Tensor) -> Tensor:
    """1/(B(B-1)) * sum_{i!=j} (x_i . x_j)^2 for unit vectors x: pushes embeddings apart."""
    b = len(x)
    if b < 2:
        return x.new_zeros(())
    gram = x @ x.T
    off_diag = gram.pow(2).sum() - gram.diagonal().pow(2).sum()
    return off_diag / (b * (b - 1))


class EmbeddingGemmaLoss(nn.Module):
    """Contrastive + spread-out at every Matryoshka dim, as in the EmbeddingGemma paper.

    `sentence_features` holds 2 or 3 tokenised columns: anchor, positive[, hard negative].
    """

    def __init__(
        self,
        model: nn.Module,
        scale: float = DEFAULTS.scale,
        hard_negative_alpha: float = DEFAULTS.hard_negative_alpha,
        use_hard_negatives: bool = DEFAULTS.hard_negatives,
        mask_duplicates: bool = DEFAULTS.mask_duplicates,
        spread_out_weight: float = DEFAULTS.spread_out_weight,
        matryoshka_dims: Sequence[int] | None = None,
    ):
        super().__init__()
        self.model = model
        self.scale = scale
        self.hard_negative_alpha = hard_negative_alpha
        self.use_hard_negatives = use_hard_negatives
        self.mask_duplicates = mask_duplicates
        self.spread_out_weight = spread_out_weight
        self.matryoshka_dims = list(matryoshka_dims) if matryoshka_dims else None
        self.last_parts: dict[str, float] = {}

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        embeddings = [self.model(f)["sentence_embedding"] for f in features]
        false_negatives = None
        if self.mask_duplicates:
            false_negatives = self._false_negatives(features[0], features[1])
        return self.loss_from_embeddings(embeddings, false_negatives)

    def loss_from_embeddings(self, embeddings: list[Tensor], false_negatives: Tensor | None = None) -> Tensor:
        q, p = embeddings[0], embeddings[1]
        n = embeddings[2] if len(embeddings) > 2 and self.use_hard_negatives else None
        dims = self.matryoshka_dims or [q.shape[-1]]
        total_contrastive = q.new_zeros(())
        total_spread = q.new_zeros(())
        for dim in dims:
            qd = F.normalize(q[:, :dim].float(), dim=-1)
            pd = F.normalize(p[:, :dim].float(), dim=-1)
            nd = F.normalize(n[:, :dim].float(), dim=-1) if n is not None else None
            total_contrastive = total_contrastive + contrastive_loss(
                qd, pd, nd, self.scale, self.hard_negative_alpha, false_negatives
            )
            if self.spread_out_weight:
                total_spread = total_spread + spread_out_loss(qd) + spread_out_loss(pd)
        loss = total_contrastive + self.spread_out_weight * total_spread
        self.last_parts = {"contrastive": float(total_contrastive.detach()), "spread_out": float(total_spread.detach())}
        return loss

    @staticmethod
    def _false_negatives(anchors: dict[str, Tensor], positives: dict[str, Tensor]) -> Tensor | None:
        """In-batch pairs sharing a query or a positive: each would be the other's false negative."""
        masks = [duplicate_mask(f["input_ids"]) for f in (anchors, positives) if "input_ids" in f]
        if not masks:
            return None
        mask = masks[0]
        for m in masks[1:]:
            mask = mask | m
        return mask if bool(mask.any()) else None

    @property
    def citation(self) -> str:
        return "EmbeddingGemma: Powerful and Lightweight Text Representations (arXiv 2509.20354)"
