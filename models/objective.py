"""What one training step minimises and how: the loss module (:class:`TrainModel`), the optimiser and its schedule.

The loss is

    triplet * L_triplet(miner) + distill_dlib * L_dlib + distill_facenet * L_facenet
    + binary_head * BCE(head(|f(a) - f(b)|), same)

over a P x K batch (online triplet mining needs several images per person),
optionally followed by ``distill_extra_batch`` images whose labels are not
used: they only feed the distillation terms.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import losses as L
from .network import BinaryHead, FaceEmbeddingNet
from .recipe import TrainConfig, TrainError

TEACHER_DIMS = {"dlib": 128, "facenet": 512}


class TrainModel(nn.Module):
    """The embedding network with its training-only heads; ``forward`` returns the loss.

    Everything that has parameters runs inside ``forward`` so DDP sees (and
    all-reduces) every gradient, the heads' included.
    """

    def __init__(self, net: FaceEmbeddingNet, cfg: TrainConfig) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg
        dim = net.embedding_dim
        self.binary_head = BinaryHead(dim) if cfg.binary_head > 0 else None
        use_projection = cfg.distill_facenet > 0 and cfg.distill_facenet_mode == "projection"
        self.projection = L.ProjectionHead(dim, TEACHER_DIMS["facenet"]) if use_projection else None
        if cfg.distill_dlib > 0 and dim != TEACHER_DIMS["dlib"]:
            raise TrainError(f"distill_dlib needs a {TEACHER_DIMS['dlib']}-d embedding, the net has {dim}")
        self.amp: torch.dtype | None = None  # the autocast dtype, None: full fp32

    def forward(self, images: torch.Tensor, labels: torch.Tensor, n_pk: int, teachers: dict[str, torch.Tensor],
                generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        with torch.autocast(images.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            emb = self.net(images)
        emb = emb.float()  # losses in fp32
        pk, lab = emb[:n_pk], labels[:n_pk]
        total = emb.new_zeros(())
        terms: dict[str, float] = {}
        if cfg.triplet > 0:
            if cfg.miner == "random":
                trip = L.random_triplets(lab, generator)
            elif cfg.miner == "semi_hard":
                trip = L.semi_hard_triplets(pk, lab, cfg.margin, cfg.semi_hard_fallback)
            else:
                trip = L.batch_hard_triplets(pk, lab)
            loss = L.triplet_loss_from_indices(pk, trip, cfg.margin)
            total = total + cfg.triplet * loss
            terms.update(triplet=float(loss.detach()), triplets=float(len(trip)),
                         active=L.fraction_active(pk, trip, cfg.margin))
        if cfg.distill_dlib > 0:
            loss = L.embedding_distillation(emb, teachers["dlib"], cfg.distill_kind)
            total = total + cfg.distill_dlib * loss
            terms["distill_dlib"] = float(loss.detach())
        if cfg.distill_facenet > 0:
            if self.projection is not None:
                loss = L.projected_distillation(emb, teachers["facenet"], self.projection, cfg.distill_kind)
                loss = loss + _touch(self.projection)  # no valid teacher row: keep DDP's graph complete
            else:
                loss = L.similarity_matrix_distillation(emb, teachers["facenet"])
            total = total + cfg.distill_facenet * loss
            terms["distill_facenet"] = float(loss.detach())
        if self.binary_head is not None:
            i, j, same = L.balanced_pairs(lab, generator)
            a, b = (pk[i].detach(), pk[j].detach()) if cfg.binary_head_detach else (pk[i], pk[j])
            loss = L.binary_head_loss(self.binary_head.logits(a, b), same) + _touch(self.binary_head)
            total = total + cfg.binary_head * loss
            terms["binary_head"] = float(loss.detach())
        terms["loss"] = float(total.detach())
        return total, terms


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision where it pays: fp16 on CUDA, bf16 on a CPU that computes bf16 natively.

    On this project's 2-core AVX512-BF16 machine, bf16 autocast plus
    channels-last makes a whole training step 1.5x faster
    (benchmarks/train_speed.py); a CPU without native bf16 would emulate it
    and be slower, so it stays fp32.
    """
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and _cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _touch(module: nn.Module) -> torch.Tensor:
    """Zero that depends on every parameter of ``module``."""
    return sum(p.sum() for p in module.parameters()) * 0.0


@dataclass
class LrSchedule:
    """Linear warmup, then cosine (or constant) decay to ``min_lr_ratio * lr``.

    Progress is the larger of the step share and the time-budget share, so a
    budget-limited run still reaches the end of its cosine. Stateless given
    (step, seconds): a resumed run recomputes the same rate.
    """

    base_lr: float
    warmup_steps: int
    total_steps: int
    budget_seconds: float | None
    kind: str = "cosine"
    min_ratio: float = 0.01
    last_lr: float = 0.0

    def lr_at(self, step: int, seconds: float) -> float:
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.kind == "constant":
            return self.base_lr * warm
        progress = step / max(1, self.total_steps)
        if self.budget_seconds:
            progress = max(progress, seconds / self.budget_seconds)
        progress = min(1.0, progress)
        cos = self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.base_lr * warm * cos

    def apply(self, optimizer: torch.optim.Optimizer, step: int, seconds: float) -> float:
        self.last_lr = self.lr_at(step, seconds)
        for group in optimizer.param_groups:
            group["lr"] = self.last_lr
        return self.last_lr

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_lr = float(state.get("last_lr", 0.0))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on conv / linear weights only: decaying BatchNorm scales and biases only hurts."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)
