"""The EmbeddingGemma loss, term by term, against values worked out by hand on 2-3 row tensors.

Vectors are chosen so every similarity is a round number (0, 0.5, 0.6, 0.8, 1/sqrt 2); the expected
values in the comments are the formulas of ../shared/PAPER.md evaluated on them.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from soupkit.train.losses import EmbeddingGemmaLoss, contrastive_loss, duplicate_mask, spread_out_loss

R2 = math.sqrt(2.0)


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def softplus(x: float) -> float:
    """log(1 + e^x): the InfoNCE loss of one row with a single competing logit x - positive."""
    return math.log1p(math.exp(x))


class LookupEncoder(nn.Module):
    """A 'model' whose embedding of a text is a fixed row chosen by the text's first token id.

    Lets `EmbeddingGemmaLoss.forward` run on exact vectors while still seeing token ids, which is
    what duplicate masking reads.
    """

    def __init__(self, table: dict[int, list[float]]):
        super().__init__()
        self.table = table

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rows = [self.table[int(i)] for i in features["input_ids"][:, 0]]
        return {"sentence_embedding": t(rows)}


def ids(*first_tokens: int) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.tensor([[tok, 99] for tok in first_tokens])}


# --- contrastive with in-batch negatives -------------------------------------------------------


def test_in_batch_contrastive_matches_hand_value():
    q = t([[1, 0], [0, 1]])
    p = t([[1, 0], [0.6, 0.8]])
    # sims q.p^T = [[1, 0.6], [0, 0.8]]; scale 2 -> logits [[2, 1.2], [0, 1.6]]
    # row 0: -log(e^2 / (e^2 + e^1.2)) = log(1 + e^-0.8); row 1: log(1 + e^-1.6)
    expected = (softplus(-0.8) + softplus(-1.6)) / 2
    loss = contrastive_loss(q, p, None, scale=2.0, hard_negative_alpha=5.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


# --- hard negative weighted by exp(alpha * stopgrad(sim)) ------------------------------------


Q_HARD = [[1, 0], [0, 1]]
P_HARD = [[1, 0], [0, 1]]
N_HARD = [[0.6, 0.8], [0.8, 0.6]]  # sim(q_i, n_i) = 0.6 for both rows


def test_hard_negative_weight_value():
    q, p, n = t(Q_HARD), t(P_HARD), t(N_HARD)
    # scale 1, alpha 5: denominator e^1 (positive) + e^0 (in-batch) + w e^0.6 with w = e^(5*0.6) = e^3
    expected = -math.log(math.e / (math.e + 1 + math.exp(3.0) * math.exp(0.6)))
    loss = contrastive_loss(q, p, n, scale=1.0, hard_negative_alpha=5.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # alpha = 0 is an unweighted hard negative: w = 1
    plain = contrastive_loss(q, p, n, scale=1.0, hard_negative_alpha=0.0)
    assert plain.item() == pytest.approx(-math.log(math.e / (math.e + 1 + math.exp(0.6))), rel=1e-6)


def test_no_gradient_flows_through_the_hard_negative_weight():
    """d loss_i / d q_i = s * (sum_j pi_ij p_j + pi_in n_i - p_i), with w a constant inside pi.

    Were w differentiated, the hard-negative term would gain a factor (s + alpha) instead of s.
    """
    scale, alpha = 1.0, 5.0
    q = t(Q_HARD).requires_grad_(True)
    p, n = t(P_HARD), t(N_HARD)
    contrastive_loss(q, p, n, scale=scale, hard_negative_alpha=alpha).backward()

    w = math.exp(alpha * 0.6)
    terms = [math.e, 1.0, w * math.exp(0.6)]  # positive, in-batch negative, weighted hard negative
    pi_pos, pi_neg, pi_hard = (x / sum(terms) for x in terms)
    batch = 2
    expected = torch.zeros(2, 2)
    for i in range(2):
        j = 1 - i
        grad_stopped = scale * (pi_pos * p[i] + pi_neg * p[j] + pi_hard * n[i] - p[i])
        expected[i] = grad_stopped / batch
    torch.testing.assert_close(q.grad, expected)

    grad_through_w = expected + alpha * pi_hard * n / batch
    assert not torch.allclose(q.grad, grad_through_w)


# --- duplicate masking ------------------------------------------------------------------------


def test_duplicate_mask_marks_repeated_rows_off_the_diagonal():
    mask = duplicate_mask(torch.tensor([[5, 6], [5, 6], [7, 8]]))
    assert mask.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert not duplicate_mask(torch.tensor([[5, 6], [5, 7]])).any()


# Rows 0 and 1 repeat one query text with different positives; row 2 is unrelated.
Q_DUP = [[1, 0], [1, 0], [0, 1]]
P_DUP = [[1, 0], [0.8, 0.6], [0, 1]]
# sims: row 0 [1, 0.8, 0]; row 1 [1, 0.8, 0]; row 2 [0, 0.6, 1]; scale 1.
# Masked: row 0 loses p1, row 1 loses p0 (each is the other's false negative).
MASKED = (softplus(0 - 1) + softplus(0 - 0.8) + math.log(1 + math.exp(0.6) + math.e) - 1) / 3
UNMASKED = (
    (math.log(math.e + math.exp(0.8) + 1) - 1)
    + (math.log(math.e + math.exp(0.8) + 1) - 0.8)
    + (math.log(1 + math.exp(0.6) + math.e) - 1)
) / 3


def test_contrastive_with_false_negatives_masked():
    false_negatives = duplicate_mask(torch.tensor([[5], [5], [7]]))
    loss = contrastive_loss(t(Q_DUP), t(P_DUP), None, 1.0, 5.0, false_negatives)
    assert loss.item() == pytest.approx(MASKED, rel=1e-6)


@pytest.mark.parametrize("mask_duplicates, expected", [(True, MASKED), (False, UNMASKED)])
def test_forward_masks_a_repeated_query_text(mask_duplicates, expected):
    model = LookupEncoder({1: Q_DUP[0], 3: Q_DUP[2], 10: P_DUP[0], 11: P_DUP[1], 12: P_DUP[2]})
    loss_fn = EmbeddingGemmaLoss(model, scale=1.0, spread_out_weight=0.0, mask_duplicates=mask_duplicates)
    loss = loss_fn([ids(1, 1, 3), ids(10, 11, 12)])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_forward_masks_a_repeated_positive_text():
    # Two different queries share one positive text: each query's copy in the other row is masked.
    q = [[1, 0], [0.6, 0.8]]
    p = [0.8, 0.6]
    model = LookupEncoder({1: q[0], 2: q[1], 10: p})
    loss_fn = EmbeddingGemmaLoss(model, scale=1.0, spread_out_weight=0.0)
    # With the duplicate masked each row has only its own positive: loss log(1) = 0.
    assert loss_fn([ids(1, 2), ids(10, 10)]).item() == pytest.approx(0.0, abs=1e-6)
    loss_fn.mask_duplicates = False
    assert loss_fn([ids(1, 2), ids(10, 10)]).item() == pytest.approx(math.log(2), rel=1e-6)


# --- spread-out regulariser -------------------------------------------------------------------


def test_spread_out_matches_hand_value():
    x = t([[1, 0], [0.6, 0.8], [0, 1]])
    # off-diagonal dots 0.6, 0, 0.8 (each twice): 2 * (0.36 + 0 + 0.64) / (3 * 2) = 1/3
    assert spread_out_loss(x).item() == pytest.approx(1 / 3, rel=1e-6)
    assert spread_out_loss(t([[0.6, 0.8]])).item() == 0.0  # one row: no pairs


# --- Matryoshka: truncate, renormalise, sum over dims ------------------------------------------

Q_MRL = [[1, 0, 1, 0], [0, 1, 0, 1]]
P_MRL = [[1, 0, 0, 1], [1, 1, 1, -1]]
# dim 4, after normalising: sims [[1/2, 1/sqrt2], [1/2, 0]]; q0.q1 = 0, p0.p1 = 0
CONTRASTIVE_4 = (softplus(1 / R2 - 0.5) + softplus(0.5 - 0)) / 2
# dim 2: q -> [1,0], [0,1]; p -> [1,0], [1,1]/sqrt2: sims [[1, 1/sqrt2], [0, 1/sqrt2]]; p0.p1 = 1/sqrt2
CONTRASTIVE_2 = (softplus(1 / R2 - 1) + softplus(0 - 1 / R2)) / 2
SPREAD_2 = 2 * 0.5 / 2  # queries orthogonal; positives 2 * (1/sqrt2)^2 / (2 * 1)


def test_matryoshka_sums_both_terms_over_truncated_renormalised_dims():
    loss_fn = EmbeddingGemmaLoss(nn.Identity(), scale=1.0, spread_out_weight=1.0, matryoshka_dims=[4, 2])
    loss = loss_fn.loss_from_embeddings([t(Q_MRL), t(P_MRL)])
    assert loss.item() == pytest.approx(CONTRASTIVE_4 + CONTRASTIVE_2 + SPREAD_2, rel=1e-6)
    assert loss_fn.last_parts["contrastive"] == pytest.approx(CONTRASTIVE_4 + CONTRASTIVE_2, rel=1e-6)
    assert loss_fn.last_parts["spread_out"] == pytest.approx(SPREAD_2, rel=1e-6)


def test_without_matryoshka_dims_only_the_full_width_counts():
    loss_fn = EmbeddingGemmaLoss(nn.Identity(), scale=1.0)
    assert loss_fn.loss_from_embeddings([t(Q_MRL), t(P_MRL)]).item() == pytest.approx(CONTRASTIVE_4, rel=1e-6)


def test_embeddings_need_not_be_unit_length():
    """The loss normalises at every dim, so scaling an embedding changes nothing."""
    loss_fn = EmbeddingGemmaLoss(nn.Identity(), scale=1.0, spread_out_weight=1.0, matryoshka_dims=[4, 2])
    scaled = loss_fn.loss_from_embeddings([3 * t(Q_MRL), 0.5 * t(P_MRL)])
    assert scaled.item() == pytest.approx(CONTRASTIVE_4 + CONTRASTIVE_2 + SPREAD_2, rel=1e-6)


# --- switching parts off ----------------------------------------------------------------------


def test_spread_out_weight_scales_and_zero_switches_it_off():
    embeddings = [t(Q_MRL), t(P_MRL)]
    weighted = EmbeddingGemmaLoss(nn.Identity(), scale=1.0, spread_out_weight=0.1, matryoshka_dims=[4, 2])
    assert weighted.loss_from_embeddings(embeddings).item() == pytest.approx(
        CONTRASTIVE_4 + CONTRASTIVE_2 + 0.1 * SPREAD_2, rel=1e-6
    )
    off = EmbeddingGemmaLoss(nn.Identity(), scale=1.0, spread_out_weight=0.0, matryoshka_dims=[4, 2])
    assert off.loss_from_embeddings(embeddings).item() == pytest.approx(CONTRASTIVE_4 + CONTRASTIVE_2, rel=1e-6)
    assert off.last_parts["spread_out"] == 0.0


def test_hard_negative_column_is_ignored_when_switched_off():
    q, p, n = t(Q_HARD), t(P_HARD), t(N_HARD)
    off = EmbeddingGemmaLoss(nn.Identity(), scale=1.0, spread_out_weight=0.0, use_hard_negatives=False)
    # Without n: each row has e^1 against one in-batch e^0.
    assert off.loss_from_embeddings([q, p, n]).item() == pytest.approx(softplus(-1.0), rel=1e-6)
    on = EmbeddingGemmaLoss(nn.Identity(), scale=1.0, spread_out_weight=0.0)
    expected = -math.log(math.e / (math.e + 1 + math.exp(3.6)))
    assert on.loss_from_embeddings([q, p, n]).item() == pytest.approx(expected, rel=1e-6)


# --- sentence-transformers trainer compatibility ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_embeddinggemma(tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    from soupkit.models import build_embeddinggemma

    path = build_embeddinggemma(tmp_path_factory.mktemp("loss-model"), size="tiny", seed=0)
    return SentenceTransformer(str(path), device="cpu")


def test_sentence_transformers_trainer_accepts_the_loss(tiny_embeddinggemma, tmp_path):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from soupkit.prompts import EMBEDDINGGEMMA_PROMPTS

    model = tiny_embeddinggemma
    # ICD-10-CM inclusion term -> title, hard negative a sibling title; rows 0 and 1 share a query.
    train = Dataset.from_dict(
        {
            "anchor": ["Cholera", "Cholera", "Typhoid fever", "Tuberculosis of nose"],
            "positive": [
                "Cholera due to Vibrio cholerae 01, biovar cholerae",
                "Cholera, unspecified",
                "Typhoid fever, unspecified",
                "Other respiratory tuberculosis",
            ],
            "negative": ["Cholera, unspecified", "Typhoid meningitis", "Typhoid pneumonia", "Tuberculous pleurisy"],
        }
    )
    loss = EmbeddingGemmaLoss(model, matryoshka_dims=[64, 32])
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
        prompts={"anchor": EMBEDDINGGEMMA_PROMPTS["query"], "positive": EMBEDDINGGEMMA_PROMPTS["document"]},
    )
    before = model[3].linear.weight.detach().clone()
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss)
    result = trainer.train()
    assert result.global_step == 2
    assert math.isfinite(result.training_loss)
    assert set(loss.last_parts) == {"contrastive", "spread_out"}
    assert not torch.equal(before, model[3].linear.weight)
