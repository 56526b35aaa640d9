"""``facegate train run``: triplet training with distillation and a binary head, resumable, CPU or CUDA/DDP.

One step sees a P x K batch (online triplet mining needs several images per
person), optionally followed by ``distill_extra_batch`` random images whose
labels are not used: they only feed the distillation terms, so the many
people with a single photo still teach something. The loss is

    triplet * L_triplet(miner) + distill_dlib * L_dlib + distill_facenet * L_facenet
    + binary_head * BCE(head(|f(a) - f(b)|), same)

Reproducibility: every random draw is a function of (seed, rank, epoch or
step): the P x K batches (:class:`PKBatchSampler`), the augmentations
(:class:`FaceCropDataset`), the extra distillation images and the
miners' / pair sampler's generators. A resumed run therefore replays exactly
the batches an uninterrupted one would have seen; the checkpoint still carries
the global RNG states (dropout, if any). Under DDP each rank draws from its own
seed stream, so ranks see different batches.

A time budget (``max_minutes``) counts training time only (not evaluation or
checkpoint writing), so recipes with the same budget are compared fairly;
the cosine schedule then follows the elapsed share of the budget.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import random
import signal
import sys
import time
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from facegate.edge.atomic import atomic_write, atomic_write_json, atomic_write_text
from facegate.edge.errors import FacegateError

from . import losses as L
from .data import AugmentConfig, Collate, FaceCropDataset, PKBatchSampler, describe, preprocess
from .evalset import EvalSet, binary_head_report, build_eval_set, eval_report, load_eval_set
from .network import BinaryHead, FaceEmbeddingNet, NetConfig, fold_batchnorm, net_config_from_dict
from .prepare import PreparedCache, load_cache

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RESULT = "result.json"
BUNDLES = "bundles"  # the run's bundle folders: facegate-mfn-onnx-fp32/, facegate-mfn-onnx-int8/
BUNDLE_NAME = "facegate-mfn"
CHECKPOINT_FORMAT = 1

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
MINERS = ("random", "semi_hard", "batch_hard")
FACENET_MODES = ("similarity", "projection")
DISTILL_KINDS = ("cosine", "mse")
EXTRA_POOLS = ("singletons", "all")
DEVICES = ("auto", "cpu", "cuda")
TEACHER_DIMS = {"dlib": 128, "facenet": 512}


class TrainError(FacegateError, ValueError):
    """The configuration, the data or the run folder cannot be used as asked."""


# --- configuration -----------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """One training run; loaded from TOML (:meth:`from_toml`), unknown keys refused.

    Paths are used as written (``~`` and ``$VARS`` expanded); relative ones
    are relative to the working directory, so run from the project root or
    override them on the command line.
    """

    cache: str  # prepared training cache (facegate train prepare --out)
    out: str  # run folder: checkpoint, metrics, result, weights, bundles/
    eval_cache: str | None = None  # LFW split-B crops (facegate train eval-set); None: no evaluation
    seed: int = 0
    # length: whichever of epochs / max_minutes / max_steps comes first ends the run
    epochs: int = 10
    steps_per_epoch: int | None = None  # None: (images of people with >= 2 images) / (P K)
    max_minutes: float | None = None  # training time budget (evaluation excluded)
    max_steps: int | None = None  # a hard stop (tests, smoke runs); not the schedule's horizon
    # batches
    p: int = 16  # people per batch
    k: int = 4  # images per person
    distill_extra_batch: int = 0  # extra random images per step for the distillation terms only
    distill_extra_pool: str = "singletons"  # "singletons": people with one image | "all": any image
    augment: bool = True
    # centre each teacher on the mean of its unit vectors over the cache (then re-normalise): dlib's
    # embeddings share one direction (mean pair cosine 0.83), which a plain cosine pull copies instead of identity
    centre_teachers: bool = True
    # start from these weights (a run folder, its checkpoint.pt, or export_run's .pt such as
    # models/facegate-mfn-stage1.pt) with a new optimiser and schedule; --resume of this run's own checkpoint wins
    init_from: str | None = None
    # optimisation
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05  # conv / linear weights only (not BatchNorm, biases, heads' biases)
    momentum: float = 0.9  # SGD
    schedule: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float = 0.0  # max gradient norm; 0: off
    # losses
    margin: float = L.DEFAULT_MARGIN  # alpha, squared-distance units
    miner: str = "batch_hard"
    semi_hard_fallback: str = "mildest_hard"
    triplet: float = 1.0
    distill_dlib: float = 0.0  # 128-d, direct (student vs teacher embedding)
    distill_facenet: float = 0.0  # 512-d
    distill_facenet_mode: str = "similarity"  # "similarity" matrices | "projection" head 128 -> 512
    distill_kind: str = "cosine"  # for the direct / projected terms
    binary_head: float = 0.0  # BCE weight of the |f(a) - f(b)| logistic head
    binary_head_detach: bool = False  # True: the head learns, the embedding does not follow its loss
    # machinery
    threads: int = 2
    loader_workers: int = 0
    device: str = "auto"  # "auto": CUDA when available
    amp: bool = True  # mixed precision: fp16 on CUDA; bf16 on a CPU with native bf16 (AVX512-BF16 / AMX)
    channels_last: bool = True  # NHWC tensors: oneDNN's fast convolution path on CPU
    net: dict[str, Any] = field(default_factory=dict)  # NetConfig overrides, plus "width" (channel multiplier)
    eval_every_epochs: int = 1  # 0: only at the end
    eval_batch: int = 128
    log_every: int = 20  # steps per metrics line
    export: bool = True  # fp32 + INT8 ONNX bundles (facegate.export) from the final evaluation
    export_min_int8_cosine: float | None = None  # INT8 parity floor (mean cosine to torch); None: the exporter's
    bundle_version: str = "0.1.0"

    def __post_init__(self) -> None:
        choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "miner": MINERS,
                   "distill_facenet_mode": FACENET_MODES, "distill_kind": DISTILL_KINDS,
                   "distill_extra_pool": EXTRA_POOLS, "device": DEVICES,
                   "semi_hard_fallback": ("mildest_hard", "none")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise TrainError(f"{key} = {getattr(self, key)!r}: choose from {', '.join(allowed)}")
        positive = ("epochs", "p", "k", "threads", "eval_batch", "log_every")
        for key in positive:
            if getattr(self, key) < 1:
                raise TrainError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.p < 2:
            raise TrainError("p must be at least 2 (a triplet needs a negative)")
        for key in ("steps_per_epoch", "max_steps"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise TrainError(f"{key} must be positive, got {getattr(self, key)}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise TrainError(f"max_minutes must be positive, got {self.max_minutes}")
        nonneg = ("lr", "weight_decay", "warmup_steps", "grad_clip", "margin", "triplet", "distill_dlib",
                  "distill_facenet", "binary_head", "distill_extra_batch", "loader_workers", "eval_every_epochs")
        for key in nonneg:
            if getattr(self, key) < 0:
                raise TrainError(f"{key} must not be negative, got {getattr(self, key)}")
        if self.export_min_int8_cosine is not None and not -1.0 <= self.export_min_int8_cosine <= 1.0:
            raise TrainError(f"export_min_int8_cosine must be in [-1, 1], got {self.export_min_int8_cosine}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise TrainError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.triplet + self.distill_dlib + self.distill_facenet + self.binary_head <= 0:
            raise TrainError("every loss weight is zero: nothing to train")
        if self.distill_extra_batch and not (self.distill_dlib or self.distill_facenet):
            raise TrainError("distill_extra_batch needs a distillation term (distill_dlib or distill_facenet)")
        build_net_config(self.net)  # refuse bad overrides now, not after the data is loaded

    # -- I/O ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> TrainConfig:
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(data) - set(hints))
        if unknown:
            raise TrainError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(hints))}")
        missing = [f.name for f in fields(cls) if f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and f.name not in data]
        if missing:
            raise TrainError(f"{where}: missing key(s) {', '.join(missing)}")
        values = {k: _check_type(k, v, hints[k], where) for k, v in data.items()}
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a recipe; ``extends = "other.toml"`` (relative to the file) inherits its keys first."""
        data = _read_toml(Path(path))
        data.update({k: v for k, v in overrides.items()})
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """TOML that :meth:`from_toml` reads back to an equal config (None values are left out)."""
        d = self.to_dict()
        net = d.pop("net")
        lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if v is not None]
        if net:
            lines += ["", "[net]"] + [f"{k} = {_toml_value(v)}" for k, v in net.items() if v is not None]
        return "\n".join(lines) + "\n"

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @property
    def teachers(self) -> tuple[str, ...]:
        """The teachers whose embeddings the batches must carry."""
        return tuple(t for t, w in (("dlib", self.distill_dlib), ("facenet", self.distill_facenet)) if w > 0)


def _read_toml(path: Path, depth: int = 0) -> dict[str, Any]:
    if depth > 8:
        raise TrainError(f"{path}: 'extends' chain too deep (a loop?)")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TrainError(f"{path}: no such recipe") from None
    except tomllib.TOMLDecodeError as exc:
        raise TrainError(f"{path}: not valid TOML ({exc})") from None
    base = data.pop("extends", None)
    if base is None:
        return data
    merged = _read_toml((path.parent / str(base)), depth + 1)
    net = {**merged.get("net", {}), **data.pop("net", {})}
    merged.update(data)
    if net:
        merged["net"] = net
    return merged


def _check_type(key: str, value: Any, hint: Any, where: str) -> Any:
    """Accept ``value`` for a field annotated ``hint`` (int for float is fine; bool for int is not)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    if value is None and type(None) in options:
        return None
    for opt in options:
        base = typing.get_origin(opt) or opt
        if base is bool and isinstance(value, bool):
            return value
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is str and isinstance(value, str):
            return value
        if base is dict and isinstance(value, dict):
            return dict(value)
    names = "/".join(getattr(o, "__name__", str(o)) for o in options)
    raise TrainError(f"{where}: {key} = {value!r} should be {names}")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TrainError(f"cannot write {v!r} as TOML")


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is read as TOML, else taken as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise TrainError(f"--set {text!r}: expected KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


# --- the network's shape ------------------------------------------------------------------
def _divisible(c: float, d: int = 8) -> int:
    return max(d, int(round(c / d)) * d)


def build_net_config(overrides: dict[str, Any] | None = None) -> NetConfig:
    """:class:`NetConfig` with ``overrides``; ``width`` scales every channel count (multiples of 8)."""
    o = dict(overrides or {})
    allowed = {f.name for f in fields(NetConfig)} | {"width"}
    unknown = sorted(set(o) - allowed)
    if unknown:
        raise TrainError(f"net: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    width = float(o.pop("width", 1.0))
    if width <= 0:
        raise TrainError(f"net.width must be positive, got {width}")
    try:
        cfg = net_config_from_dict(o)
        if width != 1.0:
            cfg = dataclasses.replace(
                cfg, stem_channels=_divisible(cfg.stem_channels * width),
                head_channels=_divisible(cfg.head_channels * width),
                stages=tuple(dataclasses.replace(s, channels=_divisible(s.channels * width)) for s in cfg.stages))
    except (TypeError, ValueError) as exc:
        raise TrainError(f"net: {exc}") from None
    return cfg


def net_config_to_dict(cfg: NetConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# --- the model under training -----------------------------------------------------------
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


# --- schedule ----------------------------------------------------------------------------
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


# --- run state, checkpoints, RNG ------------------------------------------------------------
@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    epoch_step: int = 0  # steps done within the current epoch
    step: int = 0  # optimizer steps done in all
    seconds: float = 0.0  # training time (no evaluation, no checkpoint writing)
    eval_step: int = -1  # step of the last evaluation
    stop_reason: str = ""


def _rng_states() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    out = {"torch": torch.get_rng_state(), "python": random.getstate(),
           "numpy": {"bit_generator": np_state["bit_generator"],
                     "key": torch.from_numpy(np.asarray(np_state["state"]["key"]).astype(np.int64)),
                     "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                     "gauss": float(np_state["gauss"])}}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_states(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    n = s["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"], "has_gauss": n["has_gauss"], "gauss": n["gauss"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]}})
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` that never leaves half a checkpoint (see :mod:`facegate.edge.atomic`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint of :func:`train` (plain tensors and Python values: ``weights_only`` loading)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise TrainError(f"{path}: no checkpoint")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path}: not a facegate training checkpoint (format {ckpt.get('format')!r})")
    return ckpt


def _initial_weights(source: str, net_cfg: NetConfig) -> dict[str, torch.Tensor]:
    """The unfolded state_dict of ``source`` for ``init_from``, refused if it is another architecture."""
    from facegate.export import ExportError
    from facegate.export.checkpoint import load_checkpoint as load_any

    path = Path(os.path.expandvars(source)).expanduser()
    try:
        net, extras = load_any(path)
    except ExportError as exc:
        raise TrainError(f"init_from: {exc}") from None
    if extras["folded"]:
        raise TrainError(f"init_from {path}: BatchNorm is folded into these weights; give the unfolded .pt")
    if extras["net_config"] != net_cfg:
        raise TrainError(f"init_from {path}: its network {extras['net_config']} is not the recipe's {net_cfg}")
    return net.state_dict()


def net_from_checkpoint(ckpt: dict[str, Any]) -> FaceEmbeddingNet:
    """The checkpoint's network in eval mode (for ``train eval``; export reads checkpoints with
    :func:`facegate.export.checkpoint.load_checkpoint`)."""
    try:
        cfg = net_config_from_dict(ckpt["net_config"])
    except ValueError as exc:
        raise TrainError(f"checkpoint net_config: {exc}") from None
    net = FaceEmbeddingNet(cfg)
    net.load_state_dict(ckpt["model"]["net"])
    return net.eval()


def binary_head_from_checkpoint(ckpt: dict[str, Any]) -> BinaryHead | None:
    prefix = "binary_head."
    state = {k[len(prefix):]: v for k, v in ckpt["model"]["heads"].items() if k.startswith(prefix)}
    if not state:
        return None
    head = BinaryHead(int(state["linear.weight"].shape[1]))
    head.load_state_dict(state)
    return head


# --- distributed ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this run initialised the process group (and tears it down)

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(cfg: TrainConfig) -> Dist:
    """DDP when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise TrainError("device = 'cuda' but CUDA is not available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device, owns)


def _sync_stop(flag: bool, state: TrainState, d: Dist) -> bool:
    """Stop on every rank when any rank wants to; the ranks also agree on the training time (the max).

    The time drives the budget and the time-based cosine, so ranks that
    disagreed on it would step with different learning rates.
    """
    if d.world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0, state.seconds], dtype=torch.float64, device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    state.seconds = float(t[1])
    return bool(t[0] > 0)


def _barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


# --- evaluation ----------------------------------------------------------------------------
@torch.no_grad()
def embed_crops(net: nn.Module, crops: np.ndarray, batch_size: int = 128,
                device: torch.device | str = "cpu", rows: np.ndarray | None = None) -> np.ndarray:
    """(N, dim) float32 embeddings of BGR uint8 crops, network in eval mode (restored afterwards)."""
    was_training = net.training
    net.eval()
    rows = np.arange(len(crops)) if rows is None else np.asarray(rows)
    dim = int(getattr(net, "embedding_dim", 128))
    out = np.zeros((len(crops), dim), np.float32)
    try:
        for s in range(0, len(rows), batch_size):
            r = rows[s:s + batch_size]
            x = torch.from_numpy(preprocess(np.asarray(crops[r]))).to(device)
            out[r] = net(x).float().cpu().numpy()
    finally:
        net.train(was_training)
    return out


def evaluate_model(net: nn.Module, eval_set: EvalSet, binary_head: BinaryHead | None = None,
                   model_id: str = BUNDLE_NAME, batch_size: int = 128,
                   device: torch.device | str = "cpu") -> dict[str, Any]:
    """The LFW-half report of a torch network on the cached split-B crops (+ the head's figures)."""
    t0 = time.time()
    vectors = embed_crops(net, eval_set.crops, batch_size, device, rows=np.flatnonzero(eval_set.ok))
    report = eval_report(eval_set, vectors, model_id)
    if binary_head is not None:
        w = binary_head.linear.weight.detach().cpu().numpy().reshape(-1)
        report.update(binary_head_report(eval_set, vectors, w, float(binary_head.linear.bias.detach().cpu()[0])))
    report["eval_seconds"] = round(time.time() - t0, 1)
    return json.loads(json.dumps(report))  # plain Python numbers: checkpoints load with weights_only


def _summary(report: dict[str, Any]) -> str:
    s = (f"acc {100 * report['accuracy_mean']:.2f}+-{100 * report['accuracy_std']:.2f}% auc {report['auc']:.4f} "
         f"eer {100 * report['eer']:.2f}% tar@1e-3 {report['tar_at_far_1e-3']:.3f} "
         f"tar@1e-4 {report['tar_at_far_1e-4']:.3f}")
    if "head_accuracy_mean" in report:
        s += f" head acc {100 * report['head_accuracy_mean']:.2f}%"
    return s


# --- data for a step ----------------------------------------------------------------------
def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def _extra_pool(cache: PreparedCache, cfg: TrainConfig) -> np.ndarray:
    """Rows eligible for the distillation-only images: at least one needed teacher embedding."""
    has = np.zeros(len(cache), bool)
    for t in cfg.teachers:
        has |= np.isfinite(cache.teachers[t]).all(axis=1)
    if cfg.distill_extra_pool == "singletons":
        counts = np.bincount(cache.labels, minlength=len(cache.people))
        single = has & (counts[cache.labels] == 1)
        if single.any():
            return np.flatnonzero(single)
        log.warning("no single-image person with a teacher embedding; extra distillation images drawn from all")
    return np.flatnonzero(has)


def _step_batches(sampler: PKBatchSampler, start: int, first_step: int, extra: int, pool: np.ndarray,
                  seed: int, rank: int) -> list[list[int]]:
    """The epoch's P x K batches from ``start`` on, each followed by its extra distillation rows."""
    out = []
    for n, batch in enumerate(list(sampler)[start:]):
        if extra and len(pool):
            rng = np.random.default_rng([seed, rank, first_step + n, 7])
            batch = batch + rng.choice(pool, size=extra, replace=len(pool) < extra).tolist()
        out.append(batch)
    return out


# --- the run -------------------------------------------------------------------------------
@dataclass
class TrainResult:
    net: FaceEmbeddingNet
    model: TrainModel
    state: TrainState
    report: dict[str, Any] | None
    out: Path
    checkpoint: Path
    bundle: Path | None = None  # the fp32 ONNX bundle
    interrupted: bool = False
    export: dict[str, Any] | None = None  # export_run's summary (also in result.json)


class _StopSignal:
    """SIGINT / SIGTERM ask for a clean stop at the end of the step (a second one is not caught)."""

    def __init__(self) -> None:
        self.requested = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _StopSignal:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._saved.clear()
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        log.warning("signal %d: stopping after this step (send again to abort)", signum)
        signal.signal(signum, self._saved.get(signum, signal.SIG_DFL))

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


class MetricsLog:
    """JSON lines, rank 0 only; on resume, lines past the checkpoint's step are dropped (they will be redone)."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None) -> None:
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.is_file():
            keep = [ln for ln in path.read_text().splitlines() if ln.strip()
                    and json.loads(ln).get("step", 0) <= resume_step]
            atomic_write_text(path, "".join(ln + "\n" for ln in keep))
        elif enabled and resume_step is None and path.is_file():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


def train(cfg: TrainConfig, resume: bool = False, progress: bool | None = None) -> TrainResult:
    """Train (or continue) one run in ``cfg.out``; see the module docstring.

    ``resume``: continue from ``out/checkpoint.pt`` if there is one (start
    afresh if not); without it an existing checkpoint is an error. ``progress``:
    a tqdm bar (None: only when stderr is a terminal).
    """
    d = _setup_distributed(cfg)
    try:
        return _train(cfg, d, resume, progress)
    finally:
        if d.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, d: Dist, resume: bool, progress: bool | None) -> TrainResult:
    torch.set_num_threads(cfg.threads)
    out = Path(os.path.expandvars(cfg.out)).expanduser()
    ckpt_path = out / CHECKPOINT
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    _barrier(d)
    ckpt = None
    if ckpt_path.is_file():
        if not resume:
            raise TrainError(f"{out} holds a run already; pass --resume to continue it or choose another out")
        ckpt = load_checkpoint(ckpt_path, map_location="cpu")
        changed = {k for k, v in cfg.to_dict().items() if ckpt["config"].get(k) != v}
        if changed:
            log.warning("resuming with changed settings: %s", ", ".join(sorted(changed)))
    elif resume:
        log.info("%s: no checkpoint, starting a new run", out)
    net_cfg = build_net_config(cfg.net)
    # a bad init_from fails now, not after the caches are read (and before the seed, which it would consume)
    initial = _initial_weights(cfg.init_from, net_cfg) if ckpt is None and cfg.init_from else None

    cache = load_cache(Path(os.path.expandvars(cfg.cache)).expanduser())
    if d.main:
        log.info("cache %s: %s", cache.folder, describe(cache))
    for t in cfg.teachers:
        if t not in cache.teachers or not np.isfinite(cache.teachers[t]).all(axis=1).any():
            raise TrainError(f"distillation from {t} asked for, but the cache has no {t} embeddings")
    eval_set = None
    if cfg.eval_cache and d.main:
        folder = Path(os.path.expandvars(cfg.eval_cache)).expanduser()
        if not (folder / "meta.json").is_file():
            log.info("%s: building the LFW split-B evaluation set first (a few minutes)", folder)
            try:
                build_eval_set(folder, workers=min(2, cfg.threads), progress=bool(progress))
            except FileNotFoundError as exc:
                raise TrainError(f"eval_cache {folder} does not exist and cannot be built: {exc}") from None
        eval_set = load_eval_set(folder)

    # model, optimiser, schedule (identical initial weights on every rank)
    torch.manual_seed(cfg.seed)
    model = TrainModel(FaceEmbeddingNet(net_cfg), cfg).to(d.device)
    model.amp = autocast_dtype(d.device) if cfg.amp else None
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=model.amp == torch.float16)
    sampler_seed = cfg.seed + 1_000_003 * d.rank  # each rank its own P x K stream
    sampler = PKBatchSampler(cache.labels, cfg.p, cfg.k, cfg.steps_per_epoch, seed=sampler_seed)
    steps_per_epoch = len(sampler)
    total_steps = cfg.epochs * steps_per_epoch
    schedule = LrSchedule(cfg.lr, cfg.warmup_steps, total_steps,
                          cfg.max_minutes * 60.0 if cfg.max_minutes else None, cfg.schedule, cfg.min_lr_ratio)
    state = TrainState()
    report: dict[str, Any] | None = None
    if ckpt is not None:
        heads = {k: v for k, v in model.state_dict().items() if not k.startswith("net.")}
        missing = set(heads) - set(ckpt["model"]["heads"])
        if missing:
            raise TrainError(f"{ckpt_path}: the checkpoint lacks {sorted(missing)} (loss weights changed?)")
        model.load_state_dict({**{f"net.{k}": v for k, v in ckpt["model"]["net"].items()},
                               **{k: ckpt["model"]["heads"][k] for k in heads}})
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        state = TrainState(**ckpt["state"])
        report = ckpt.get("eval")
        _set_rng_states(ckpt["rng"])
        log.info("resumed at epoch %d, step %d (%.0f s trained)", state.epoch, state.step, state.seconds)
    elif initial is not None:
        model.net.load_state_dict(initial)
        log.info("network initialised from %s", cfg.init_from)
    wrapped: nn.Module = model
    if d.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[d.local_rank] if d.device.type == "cuda"
                                                      else None)

    dataset = FaceCropDataset(cache, augment_config=AugmentConfig() if cfg.augment else None, seed=sampler_seed)
    collate = Collate(cache, cfg.teachers, centre=cfg.centre_teachers)
    pool = _extra_pool(cache, cfg) if cfg.distill_extra_batch else np.zeros(0, np.int64)
    n_pk = cfg.p * cfg.k
    metrics = MetricsLog(out / METRICS, d.main, state.step if ckpt is not None else None)
    model_id = lambda: f"{BUNDLE_NAME}-step{state.step}"  # noqa: E731

    def save() -> None:
        if not d.main:
            return
        _atomic_save({
            "format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "net_config": net_config_to_dict(net_cfg),
            "model": {"net": model.net.state_dict(),
                      "heads": {k: v for k, v in model.state_dict().items() if not k.startswith("net.")}},
            "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(), "scaler": scaler.state_dict(),
            "state": dataclasses.asdict(state), "rng": _rng_states(), "eval": report,
            "world_size": d.world,
        }, ckpt_path)

    def evaluate() -> None:
        nonlocal report
        state.eval_step = state.step  # on every rank, evaluated or not: the ranks must agree
        if eval_set is not None:
            # a contiguous copy: the figures of the network exactly as its checkpoint loads (and exports)
            plain = copy.deepcopy(model.net).to(memory_format=torch.contiguous_format)
            report = evaluate_model(plain, eval_set, model.binary_head, model_id(), cfg.eval_batch, d.device)
            metrics.write({"kind": "eval", "step": state.step, "epoch": state.epoch,
                           "seconds": round(state.seconds, 1), **report})
            log.info("eval at step %d: %s", state.step, _summary(report))
        _barrier(d)

    def budget_left() -> bool:
        if cfg.max_steps is not None and state.step >= cfg.max_steps:
            state.stop_reason = "max_steps"
            return False
        if cfg.max_minutes is not None and state.seconds >= cfg.max_minutes * 60.0:
            state.stop_reason = "max_minutes"
            return False
        if state.epoch >= cfg.epochs:
            state.stop_reason = "epochs"
            return False
        return True

    show = d.main and (progress if progress is not None else sys.stderr.isatty())
    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=state.step, desc="train", unit="step", disable=not show, dynamic_ncols=True)
    model.train()
    interrupted = False
    window: dict[str, float] = {}
    window_steps, window_images, window_t = 0, 0, 0.0
    state.stop_reason = ""
    try:
        with _StopSignal() as stop:
            while not _sync_stop(not budget_left(), state, d):
                sampler.set_epoch(state.epoch)
                dataset.set_epoch(state.epoch)
                batches = _step_batches(sampler, state.epoch_step, state.step, cfg.distill_extra_batch, pool,
                                        cfg.seed, d.rank)
                # a private generator: creating the iterator must not draw from the global RNG
                # (it would shift dropout's stream between a resumed and an uninterrupted run)
                loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                    num_workers=cfg.loader_workers,
                                    generator=torch.Generator().manual_seed(_seed(cfg.seed, d.rank, state.epoch)))
                stop_now = False
                t_prev = time.perf_counter()
                for batch in loader:
                    batch = batch.to(d.device, channels_last=cfg.channels_last)
                    lr = schedule.apply(optimizer, state.step, state.seconds)
                    gen = torch.Generator().manual_seed(_seed(cfg.seed, d.rank, state.step))
                    loss, terms = wrapped(batch.images, batch.labels, n_pk, batch.teachers, gen)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if cfg.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    now = time.perf_counter()
                    dt = now - t_prev
                    state.step += 1
                    state.epoch_step += 1
                    state.seconds += dt
                    for key, v in terms.items():
                        window[key] = window.get(key, 0.0) + v
                    window_steps += 1
                    window_images += len(batch.images)
                    window_t += dt
                    bar.update()
                    if show:
                        bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
                    if window_steps >= cfg.log_every or state.epoch_step == steps_per_epoch:
                        metrics.write({"kind": "train", "step": state.step, "epoch": state.epoch,
                                       "epoch_step": state.epoch_step, "lr": lr, "seconds": round(state.seconds, 2),
                                       **{k: v / window_steps for k, v in window.items()},
                                       "steps_per_s": window_steps / max(window_t, 1e-9),
                                       "images_per_s": window_images / max(window_t, 1e-9)})
                        window, window_steps, window_images, window_t = {}, 0, 0, 0.0
                    stop_now = _sync_stop(stop.requested or not budget_left(), state, d)
                    if stop_now:
                        break
                    t_prev = time.perf_counter()  # logging and syncing are not training time
                interrupted = _sync_stop(stop.requested, state, d)
                if state.epoch_step >= steps_per_epoch:
                    state.epoch += 1
                    state.epoch_step = 0
                    due = cfg.eval_every_epochs and state.epoch % cfg.eval_every_epochs == 0
                    if due and not interrupted:
                        evaluate()
                    log.info("epoch %d done (step %d, %.0f s)", state.epoch, state.step, state.seconds)
                save()
                _barrier(d)
                if stop_now:
                    break
    finally:
        bar.close()
    if interrupted:
        state.stop_reason = "interrupted"
        log.warning("interrupted at step %d; continue with --resume", state.step)
        return TrainResult(model.net, model, state, report, out, ckpt_path, None, True)
    budget_left()  # records why the run ended
    log.info("training ended (%s) at step %d after %.0f s", state.stop_reason, state.step, state.seconds)
    if state.eval_step != state.step:
        evaluate()
    save()
    bundle, exported = None, None
    if d.main:
        if cfg.export and report is not None:
            eval_folder = Path(os.path.expandvars(cfg.eval_cache)).expanduser() if cfg.eval_cache else None
            exported = export_run(ckpt_path, out / BUNDLES, calib=cache.folder, parity=eval_folder,
                                  version=cfg.bundle_version, min_int8_cosine=cfg.export_min_int8_cosine,
                                  threads=cfg.threads)
            bundle = Path(exported["bundle"]) if exported["bundle"] else None
        elif cfg.export:
            log.warning("no bundle exported: no evaluation (set eval_cache) to take thresholds from")
        atomic_write_json(out / RESULT, {"stop_reason": state.stop_reason, "steps": state.step, "epochs": state.epoch,
                                         "seconds": round(state.seconds, 1), "eval": report,
                                         "bundle": str(bundle) if bundle else None, "export": exported,
                                         "config": cfg.to_dict()}, indent=1)
    _barrier(d)
    return TrainResult(model.net, model, state, report, out, ckpt_path, bundle, False, exported)


def evaluate_checkpoint(checkpoint: str | Path, eval_cache: str | Path | None = None,
                        batch_size: int = 128, threads: int | None = None) -> dict[str, Any]:
    """The LFW-half report of a checkpoint's network (``eval_cache`` defaults to its run's)."""
    ckpt = load_checkpoint(checkpoint)
    if threads:
        torch.set_num_threads(threads)
    folder = eval_cache or ckpt["config"].get("eval_cache")
    if not folder:
        raise TrainError("no evaluation set: pass --eval-cache (build one with facegate train eval-set)")
    eval_set = load_eval_set(Path(os.path.expandvars(str(folder))).expanduser())
    step = ckpt["state"]["step"]
    return evaluate_model(net_from_checkpoint(ckpt), eval_set, binary_head_from_checkpoint(ckpt),
                          f"{BUNDLE_NAME}-step{step}", batch_size)


# --- shipping --------------------------------------------------------------------------------
def export_run(checkpoint: str | Path, out: str | Path, calib: str | Path | None = None,
               parity: str | Path | None = None, version: str | None = None,
               min_int8_cosine: float | None = None, threads: int = 1,
               weights_dir: str | Path | None = None) -> dict[str, Any]:
    """The end of ``facegate train run`` with ``export = true``.

    What ``facegate export onnx CHECKPOINT --out OUT`` does
    (:func:`facegate.export.bundles.export_checkpoint_bundles`: fp32 and INT8
    ``facegate-mfn`` ONNX bundles in ``out``, thresholds and figures from the
    checkpoint's evaluation, calibration crops from ``calib`` (default: the
    run's training cache), parity crops from ``parity`` (default: its eval
    set)), plus the network's unfolded and folded state_dicts
    (``facegate-mfn.pt``, ``facegate-mfn.folded.pt``, read by :func:`load_weights`)
    in ``weights_dir`` (default: the checkpoint's folder).

    Never raises for a failed export: the checkpoint is saved already and
    ``facegate export onnx`` can redo it. An INT8 bundle refused by its parity
    check leaves the fp32 bundle in place. Returns ``{"bundle": the fp32 bundle
    folder or None, "bundles": one row per bundle written, "weights": [...],
    "error": None or what failed}``.
    """
    from facegate.export import ExportError

    ckpt_path = Path(checkpoint)
    wdir = Path(weights_dir) if weights_dir else (ckpt_path if ckpt_path.is_dir() else ckpt_path.parent)
    result: dict[str, Any] = {"bundle": None, "bundles": [], "weights": [], "error": None}
    redo = f"facegate export onnx {ckpt_path} --out {out}"
    try:
        from facegate.export.bundles import BundleRefused, export_checkpoint_bundles
        from facegate.export.checkpoint import load_checkpoint as load_for_export

        net, extras = load_for_export(ckpt_path)
    except Exception as exc:  # the run is done: report, do not crash
        log.exception("no export: cannot read %s back", ckpt_path)
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    made: list[Any] = []
    try:
        made = export_checkpoint_bundles(net, extras, out, "onnx", calib=calib, parity_source=parity,
                                         name=BUNDLE_NAME, version=version, min_int8_cosine=min_int8_cosine,
                                         threads=threads)
    except BundleRefused as exc:  # the INT8 bundle: the fp32 one is written and verified
        made = exc.written
        log.error("%s; the fp32 bundle is kept", exc)
        result["error"] = str(exc)
    except ExportError as exc:
        log.error("no bundle exported: %s; redo with %s", exc, redo)
        result["error"] = str(exc)
    except ImportError as exc:
        log.warning("no bundle exported (%s); install the 'export' extra and run %s", exc, redo)
        result["error"] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # an exporter bug must not cost the run its result.json
        log.exception("export failed; the checkpoint is saved, redo with %s", redo)
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["bundles"] = [b.row() for b in made]
    result["bundle"] = str(made[0].folder) if made else None
    meta = {"net_config": net_config_to_dict(net.config), "step": extras["step"],
            "sha256_onnx": made[0].manifest.sha256 if made else None}
    wdir.mkdir(parents=True, exist_ok=True)
    for folded, path in ((False, wdir / f"{BUNDLE_NAME}.pt"), (True, wdir / f"{BUNDLE_NAME}.folded.pt")):
        _atomic_save({**meta, "folded": folded, "state_dict": (fold_batchnorm(net) if folded else net).state_dict()},
                     path)
        result["weights"].append(str(path))
    return result


def load_weights(path: str | Path) -> FaceEmbeddingNet:
    """A network (eval mode) from :func:`export_run`'s ``.pt`` weights, folded or not."""
    from facegate.export.checkpoint import load_checkpoint as load_for_export

    return load_for_export(path)[0]


def iter_recipes(folder: str | Path, pattern: str = "ablation_*.toml") -> Iterator[Path]:
    """Recipe files in a stable order (for :mod:`benchmarks.ablation`)."""
    yield from sorted(Path(folder).glob(pattern))


__all__: Sequence[str] = (
    "TrainConfig", "TrainError", "TrainModel", "TrainResult", "TrainState", "LrSchedule", "build_net_config",
    "train", "evaluate_model", "evaluate_checkpoint", "embed_crops", "export_run", "load_checkpoint",
    "net_from_checkpoint", "binary_head_from_checkpoint", "load_weights", "parse_override",
)
