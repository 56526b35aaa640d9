"""Losses and triplet miners for the Siamese network.

Conventions (FaceNet's): distances in the triplet loss and in the miners are
*squared* Euclidean distances, and the margin ``alpha`` is in the same unit
(0.2 on unit vectors, where squared distances lie in [0, 4]).

Every miner takes a P x K batch (embeddings + integer labels) and returns
index triplets ``(anchor, positive, negative)`` as a LongTensor of shape
(T, 3); :func:`triplet_loss_from_indices` turns any of them into the loss. The
choice of triplets is not differentiated (it is a discrete selection); the
loss is, through the gathered embeddings.

Teacher embeddings may be missing for some images (a teacher failed on that
face, or is not installed): such rows are NaN and are left out of the
distillation losses.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_MARGIN = 0.2


# --- distances ------------------------------------------------------------------------
def pairwise_squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(B, B) squared Euclidean distances, exact zeros on the diagonal, never negative."""
    sq = (x * x).sum(dim=1)
    d = sq[:, None] + sq[None, :] - 2.0 * x @ x.T
    d = d.clamp_min(0.0)
    return d * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) boolean (B, B) masks; the diagonal is neither."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


# --- the triplet loss -----------------------------------------------------------------
def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """mean(max(||a - p||^2 - ||a - n||^2 + margin, 0)); zero for an empty batch."""
    if len(anchor) == 0:
        return anchor.sum() * 0.0
    dp = (anchor - positive).pow(2).sum(dim=1)
    dn = (anchor - negative).pow(2).sum(dim=1)
    return F.relu(dp - dn + margin).mean()


def triplet_loss_from_indices(embeddings: torch.Tensor, triplets: torch.Tensor,
                              margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """The triplet loss over mined (anchor, positive, negative) index rows."""
    if len(triplets) == 0:
        return embeddings.sum() * 0.0  # keeps the graph: backward() still works
    a, p, n = triplets.unbind(dim=1)
    return triplet_loss(embeddings[a], embeddings[p], embeddings[n], margin)


def _empty(device: torch.device) -> torch.Tensor:
    return torch.zeros((0, 3), dtype=torch.long, device=device)


# --- miners ---------------------------------------------------------------------------
def random_triplets(labels: torch.Tensor, generator: torch.Generator | None = None,
                    per_anchor: int = 1) -> torch.Tensor:
    """``per_anchor`` random (positive, negative) draws for every anchor that has both.

    The baseline: no embeddings needed, most triplets are already satisfied
    after a few epochs, so the loss (which averages zeros too) shrinks fast.
    """
    pos, neg = _masks(labels)
    ok = pos.any(dim=1) & neg.any(dim=1)
    anchors = torch.nonzero(ok).flatten()
    if len(anchors) == 0:
        return _empty(labels.device)
    anchors = anchors.repeat_interleave(per_anchor)
    # uniform choice among the True entries of each row: argmax of masked uniform noise
    noise_p = torch.rand(pos[anchors].shape, generator=generator).to(labels.device)
    noise_n = torch.rand(neg[anchors].shape, generator=generator).to(labels.device)
    p = torch.where(pos[anchors], noise_p, torch.full_like(noise_p, -1.0)).argmax(dim=1)
    n = torch.where(neg[anchors], noise_n, torch.full_like(noise_n, -1.0)).argmax(dim=1)
    return torch.stack([anchors, p, n], dim=1)


@torch.no_grad()
def semi_hard_triplets(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = DEFAULT_MARGIN,
                       fallback: Literal["mildest_hard", "none"] = "mildest_hard") -> torch.Tensor:
    """FaceNet's semi-hard triplets: one per (anchor, positive) pair.

    The negative is the hardest semi-hard one: the smallest d(a, n) with
    d(a, p) < d(a, n) < d(a, p) + margin (squared distances).

    Fallback when a pair has no semi-hard negative:
    - every negative is farther than d(a, p) + margin: the pair is already
      satisfied and would add zero loss, so it yields no triplet;
    - otherwise only hard negatives (d(a, n) <= d(a, p)) exist. With
      ``"mildest_hard"`` the least hard of them (largest d(a, n)) is used: it
      still teaches, while the hardest negatives (often label noise, or
      the reason for FaceNet's early collapse) are avoided. ``"none"`` skips
      the pair, as in strict semi-hard mining.
    """
    if fallback not in ("mildest_hard", "none"):
        raise ValueError(f"fallback must be 'mildest_hard' or 'none', got {fallback!r}")
    d = pairwise_squared_distances(embeddings.detach())
    pos, neg = _masks(labels)
    a_idx, p_idx = torch.nonzero(pos, as_tuple=True)
    if len(a_idx) == 0:
        return _empty(labels.device)
    dap = d[a_idx, p_idx][:, None]  # (pairs, 1)
    dan = d[a_idx]  # (pairs, B)
    negs = neg[a_idx]
    inf = torch.full_like(dan, float("inf"))
    semi = negs & (dan > dap) & (dan < dap + margin)
    n_semi = torch.where(semi, dan, inf).argmin(dim=1)
    has_semi = semi.any(dim=1)
    chosen = torch.where(has_semi, n_semi, torch.full_like(n_semi, -1))
    if fallback == "mildest_hard":
        hard = negs & (dan <= dap)
        n_hard = torch.where(hard, dan, -inf).argmax(dim=1)
        use_hard = ~has_semi & hard.any(dim=1)
        chosen = torch.where(use_hard, n_hard, chosen)
    keep = chosen >= 0
    return torch.stack([a_idx[keep], p_idx[keep], chosen[keep]], dim=1)


@torch.no_grad()
def batch_hard_triplets(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Hermans et al.'s batch-hard triplets: per anchor, its farthest positive and nearest negative."""
    d = pairwise_squared_distances(embeddings.detach())
    pos, neg = _masks(labels)
    ok = pos.any(dim=1) & neg.any(dim=1)
    anchors = torch.nonzero(ok).flatten()
    if len(anchors) == 0:
        return _empty(labels.device)
    inf = torch.full_like(d, float("inf"))
    p = torch.where(pos, d, -inf)[anchors].argmax(dim=1)
    n = torch.where(neg, d, inf)[anchors].argmin(dim=1)
    return torch.stack([anchors, p, n], dim=1)


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor,
                            margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """Online batch-hard triplet loss: mean over anchors of max(d(a, p_hardest) - d(a, n_hardest) + margin, 0)."""
    return triplet_loss_from_indices(embeddings, batch_hard_triplets(embeddings, labels), margin)


def fraction_active(embeddings: torch.Tensor, triplets: torch.Tensor, margin: float = DEFAULT_MARGIN) -> float:
    """Share of triplets with a non-zero loss: the miner's health figure for the metrics log."""
    if len(triplets) == 0:
        return 0.0
    with torch.no_grad():
        e = embeddings.detach()
        a, p, n = triplets.unbind(dim=1)
        v = (e[a] - e[p]).pow(2).sum(1) - (e[a] - e[n]).pow(2).sum(1) + margin
        return float((v > 0).float().mean())


# --- distillation ---------------------------------------------------------------------
def _valid_rows(teacher: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(teacher).all(dim=1)


def embedding_distillation(student: torch.Tensor, teacher: torch.Tensor,
                           kind: Literal["cosine", "mse"] = "cosine") -> torch.Tensor:
    """Pull the student's embedding onto a teacher's of the same size (dlib's 128-d).

    ``cosine``: mean(1 - cos(s, t)); ``mse``: mean ||s - t||^2 (summed over
    dimensions). For unit vectors mse = 2 x cosine; mse also pulls the
    norms together when the inputs are not normalised. NaN teacher rows are skipped.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ; "
                         "use a ProjectionHead or similarity_matrix_distillation")
    ok = _valid_rows(teacher)
    if not bool(ok.any()):
        return student.sum() * 0.0
    s, t = student[ok], teacher[ok].to(student.dtype)
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(s, t, dim=1)).mean()
    if kind == "mse":
        return (s - t).pow(2).sum(dim=1).mean()
    raise ValueError(f"kind must be 'cosine' or 'mse', got {kind!r}")


class ProjectionHead(nn.Module):
    """Maps the student's embedding into a bigger teacher's space (128 -> 512 for FaceNet).

    Training only: it is thrown away at export. A linear map without bias,
    then L2 normalisation, so that the student's own space needs to match
    the teacher's only up to a linear transform.
    """

    def __init__(self, student_dim: int = 128, teacher_dim: int = 512) -> None:
        super().__init__()
        self.linear = nn.Linear(student_dim, teacher_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x), dim=1)


def projected_distillation(student: torch.Tensor, teacher: torch.Tensor, head: ProjectionHead,
                           kind: Literal["cosine", "mse"] = "cosine") -> torch.Tensor:
    """Distillation to a teacher of another size through a trained :class:`ProjectionHead`."""
    return embedding_distillation(head(student), teacher, kind)


def _cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    x = F.normalize(x, dim=1)
    return x @ x.T


def similarity_matrix_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between the student's and the teacher's in-batch cosine-similarity matrices.

    Needs no projection, so it works for any teacher size: only the
    *relations* between faces are copied, which is what verification uses.
    Off-diagonal entries only (the diagonal is 1 for both); rows and columns of
    images without a teacher embedding are left out.
    """
    ok = _valid_rows(teacher)
    if int(ok.sum()) < 2:
        return student.sum() * 0.0
    s = _cosine_matrix(student[ok])
    t = _cosine_matrix(teacher[ok].to(student.dtype))
    off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    return (s - t)[off].pow(2).mean()


# --- the binary head ------------------------------------------------------------------
def binary_head_loss(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on the head's log-odds (stabler than BCE on probabilities)."""
    return F.binary_cross_entropy_with_logits(logits, same.to(logits.dtype))


def balanced_pairs(labels: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every positive pair (i < j) of a P x K batch and as many random negative pairs.

    Returns (i, j, same). Balanced, so the head's bias is not pulled by the
    (K - 1) / (P K - 1) share of positives that a batch happens to hold.
    """
    pos, neg = _masks(labels)
    upper = torch.ones_like(pos).triu(diagonal=1)
    pi, pj = torch.nonzero(pos & upper, as_tuple=True)
    ni, nj = torch.nonzero(neg & upper, as_tuple=True)
    take = min(len(pi), len(ni)) if len(pi) else min(len(ni), len(labels))
    pick = torch.randperm(len(ni), generator=generator)[:take].to(labels.device)
    i = torch.cat([pi, ni[pick]])
    j = torch.cat([pj, nj[pick]])
    same = torch.cat([torch.ones(len(pi), device=labels.device), torch.zeros(len(pick), device=labels.device)])
    return i, j, same
