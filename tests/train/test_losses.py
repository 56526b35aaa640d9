"""Triplet loss, miners and distillation losses against hand-worked cases."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from facegate.models.losses import (  # noqa: E402
    ProjectionHead,
    balanced_pairs,
    batch_hard_triplet_loss,
    batch_hard_triplets,
    binary_head_loss,
    embedding_distillation,
    fraction_active,
    pairwise_squared_distances,
    projected_distillation,
    random_triplets,
    semi_hard_triplets,
    similarity_matrix_distillation,
    triplet_loss,
    triplet_loss_from_indices,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Four points on a line; people 0 = {0, 1}, 1 = {2, 3}.
#   x:  0    0.3  0.5  1.1
# squared distances: d01 .09  d02 .25  d03 1.21  d12 .04  d13 .64  d23 .36
LINE = torch.tensor([[0.0], [0.3], [0.5], [1.1]], dtype=torch.float64)
LINE_LABELS = torch.tensor([0, 0, 1, 1])


def rows(t: torch.Tensor) -> list[tuple[int, ...]]:
    return sorted(tuple(int(v) for v in r) for r in t)


def test_pairwise_squared_distances():
    d = pairwise_squared_distances(LINE)
    expected = torch.tensor([[0, .09, .25, 1.21], [.09, 0, .04, .64], [.25, .04, 0, .36], [1.21, .64, .36, 0]],
                            dtype=torch.float64)
    assert torch.allclose(d, expected, atol=1e-12)
    assert torch.all(d.diagonal() == 0)


def test_triplet_loss_exact_value():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.tensor([[0.3, 0.4], [0.0, 1.0]])  # ||a-p||^2 = 0.25, 1.0
    n = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # ||a-n||^2 = 1.0, 1.0
    # max(.25 - 1 + .2, 0) = 0 and max(1 - 1 + .2, 0) = .2 -> mean .1
    assert triplet_loss(a, p, n).item() == pytest.approx(0.1)
    assert triplet_loss(a, p, n, margin=0.5).item() == pytest.approx(0.25)  # (0 + .5) / 2
    assert triplet_loss(a[:0], p[:0], n[:0]).item() == 0.0


def test_semi_hard_picks_the_hand_worked_triplets():
    # (0,1): d_ap .09, negatives .25 (semi-hard: .09 < .25 < .29) and 1.21 -> n = 2
    # (1,0): d_ap .09, negatives .04 (hard) and .64 (easy): no semi-hard; mildest hard -> n = 2
    # (2,3): d_ap .36, negatives .25 and .04, both hard; mildest (largest) -> n = 0
    # (3,2): d_ap .36, negatives 1.21 and .64, both beyond .56: satisfied, no triplet
    t = semi_hard_triplets(LINE, LINE_LABELS, margin=0.2)
    assert rows(t) == [(0, 1, 2), (1, 0, 2), (2, 3, 0)]
    # loss: (.09-.25+.2) + (.09-.04+.2) + (.36-.25+.2) = .04 + .25 + .31 -> mean .2
    assert triplet_loss_from_indices(LINE, t).item() == pytest.approx(0.2)
    strict = semi_hard_triplets(LINE, LINE_LABELS, margin=0.2, fallback="none")
    assert rows(strict) == [(0, 1, 2)]
    assert triplet_loss_from_indices(LINE, strict).item() == pytest.approx(0.04)


def test_semi_hard_prefers_the_hardest_semi_hard_negative():
    # anchor 0, positive 1 (d .04); negatives at d .09 and .16, both in (.04, .24) -> the nearer one (index 2)
    x = torch.tensor([[0.0], [0.2], [0.3], [-0.4]])
    t = semi_hard_triplets(x, torch.tensor([0, 0, 1, 1]), margin=0.2)
    assert (0, 1, 2) in rows(t)


def test_batch_hard_picks_hardest_positive_and_negative():
    # anchor 0: p 1, n argmin(.25, 1.21) = 2 -> .04
    # anchor 1: p 0, n argmin(.04, .64) = 2 -> .25
    # anchor 2: p 3, n argmin(.25, .04) = 1 -> .36 - .04 + .2 = .52
    # anchor 3: p 2, n argmin(1.21, .64) = 1 -> max(.36 - .64 + .2, 0) = 0
    assert rows(batch_hard_triplets(LINE, LINE_LABELS)) == [(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1)]
    assert batch_hard_triplet_loss(LINE, LINE_LABELS).item() == pytest.approx((0.04 + 0.25 + 0.52 + 0) / 4)
    assert fraction_active(LINE, batch_hard_triplets(LINE, LINE_LABELS)) == pytest.approx(0.75)


def test_batch_hard_with_three_images_per_person():
    # x: 0, .1, .4 (person 0), .6 (person 1); anchor 3 has no positive and is skipped
    # anchor 0: positives .01, .16 -> 2; negative .36 -> max(.16 - .36 + .2, 0) = 0
    # anchor 1: positives .01, .09 -> 2; negative .25 -> .04
    # anchor 2: positives .16, .09 -> 0; negative .04 -> .32
    x = torch.tensor([[0.0], [0.1], [0.4], [0.6]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1])
    assert rows(batch_hard_triplets(x, labels)) == [(0, 2, 3), (1, 2, 3), (2, 0, 3)]
    assert batch_hard_triplet_loss(x, labels).item() == pytest.approx((0 + 0.04 + 0.32) / 3)


def test_random_triplets_are_valid_and_seeded():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # person 2 has no positive: never an anchor
    t = random_triplets(labels, torch.Generator().manual_seed(0), per_anchor=3)
    assert t.shape == (15, 3)
    a, p, n = t.unbind(1)
    assert torch.all(labels[a] == labels[p]) and torch.all(a != p) and torch.all(labels[a] != labels[n])
    assert 5 not in a.tolist()
    again = random_triplets(labels, torch.Generator().manual_seed(0), per_anchor=3)
    assert torch.equal(t, again)


def test_miners_on_batches_without_triplets():
    x = torch.randn(3, 4, requires_grad=True)
    one_person = torch.tensor([0, 0, 0])
    for t in (random_triplets(one_person), semi_hard_triplets(x, one_person), batch_hard_triplets(x, one_person)):
        assert t.shape == (0, 3)
    loss = batch_hard_triplet_loss(x, one_person)
    assert loss.item() == 0.0
    loss.backward()  # still a graph


def test_triplet_loss_gradient_pulls_positive_and_pushes_negative():
    a = torch.tensor([[0.0]], requires_grad=True)
    p = torch.tensor([[0.5]], requires_grad=True)
    n = torch.tensor([[0.6]], requires_grad=True)
    triplet_loss(a, p, n).backward()
    assert p.grad.item() > 0  # increasing p would raise the loss: descent moves p towards a
    assert n.grad.item() < 0  # and n away from a


def test_embedding_distillation_cosine_and_mse():
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.0, 1.0], [1.0, 0.0], [float("nan"), float("nan")]])  # third: no teacher
    assert embedding_distillation(s, t, "cosine").item() == pytest.approx(0.5)  # (1 + 0) / 2
    assert embedding_distillation(s, t, "mse").item() == pytest.approx(1.0)  # (2 + 0) / 2
    none = torch.full_like(t, float("nan"))
    s.requires_grad_(True)
    zero = embedding_distillation(s, none)
    assert zero.item() == 0.0
    zero.backward()
    with pytest.raises(ValueError, match="ProjectionHead"):
        embedding_distillation(s, torch.zeros(3, 5))


def test_similarity_matrix_distillation_hand_worked():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosine 0
    t = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])  # cosine .6, another size
    # off-diagonal entries: (0 - .6)^2 twice -> .36
    assert similarity_matrix_distillation(s, t).item() == pytest.approx(0.36)
    # scale does not matter (cosine), and a row without a teacher is dropped
    s3 = torch.cat([3 * s, torch.tensor([[5.0, 5.0]])])
    t3 = torch.cat([t, torch.full((1, 3), float("nan"))])
    assert similarity_matrix_distillation(s3, t3).item() == pytest.approx(0.36)


def test_projection_head_distillation_trains_the_head():
    torch.manual_seed(0)
    head = ProjectionHead(4, 6)
    s = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    t = torch.nn.functional.normalize(torch.randn(5, 6), dim=1)
    out = head(s)
    assert out.shape == (5, 6) and torch.allclose(out.norm(dim=1), torch.ones(5))
    loss = projected_distillation(s, t, head)
    loss.backward()
    assert head.linear.weight.grad is not None and head.linear.weight.grad.abs().sum() > 0


def test_binary_head_loss_and_balanced_pairs():
    logits = torch.zeros(4)
    assert binary_head_loss(logits, torch.tensor([1, 0, 1, 0])).item() == pytest.approx(math.log(2))
    assert binary_head_loss(torch.tensor([20.0, -20.0]), torch.tensor([1, 0])).item() < 1e-6
    labels = torch.tensor([0, 0, 1, 1, 2])
    i, j, same = balanced_pairs(labels, torch.Generator().manual_seed(0))
    assert same.tolist() == [1, 1, 0, 0]  # positives (0,1), (2,3) and two negatives
    assert torch.all((labels[i] == labels[j]) == same.bool()) and torch.all(i < j)
