"""Training recipes: :class:`TrainConfig`, read from TOML with ``extends``, checked before any data is read.

A recipe is the whole description of a run (data, length, losses, network
shape), so two runs with equal recipes and seeds are the same run; every key
is type-checked and every unknown key refused, because a misspelt loss
weight would otherwise silently train something else.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from facegate.edge.errors import FacegateError

from .losses import DEFAULT_MARGIN
from .network import NetConfig, net_config_from_dict

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
MINERS = ("random", "semi_hard", "batch_hard")
FACENET_MODES = ("similarity", "projection")
DISTILL_KINDS = ("cosine", "mse")
EXTRA_POOLS = ("singletons", "all")
DEVICES = ("auto", "cpu", "cuda")


class TrainError(FacegateError, ValueError):
    """The configuration, the data or the run folder cannot be used as asked."""


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
    margin: float = DEFAULT_MARGIN  # alpha, squared-distance units
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


def expand_path(value: str | Path) -> Path:
    """A path as recipes write them: ``~`` and ``$VARS`` expanded, relative to the working directory."""
    return Path(os.path.expandvars(str(value))).expanduser()


def iter_recipes(folder: str | Path, pattern: str = "ablation_*.toml") -> Iterator[Path]:
    """Recipe files in a stable order (for :mod:`benchmarks.ablation`)."""
    yield from sorted(Path(folder).glob(pattern))

