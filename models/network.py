"""Facegate's embedding network: a compact MobileFaceNet-style CNN for 112x112 crops.

Design choices, each for the Raspberry Pi door:

- Inverted-residual blocks (1x1 expand, 3x3 depthwise, linear 1x1 project)
  as in MobileFaceNet, but with ReLU instead of PReLU: PReLU has no fused
  INT8 kernel in the Pi's runtimes and makes the quantised model slower.
- Fewer and narrower blocks at 28x28 and 14x14 than MobileFaceNet (11
  blocks, not 15), and a first down-sampling block without expansion (its
  1x1 expansion at 56x56 alone costs ~25 M MACs): 0.78 M parameters and
  118 M MACs (0.235 GFLOPs counting 2 per MAC) instead of 0.99 M and 221 M.
- A GDC head (global depthwise 7x7 convolution) instead of global average
  pooling: faces are aligned, so each position of the last map means the same
  part of the face and deserves its own weight.
- Linear 128-d embedding + BatchNorm, then L2 normalisation: distances are
  Euclidean between unit vectors, as everywhere in facegate.

Every Conv2d / Linear that is followed by a BatchNorm sits next to it in one
``nn.Sequential``, so :func:`fold_batchnorm` can fold them for export.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

INPUT_SIZE = 112


@dataclass(frozen=True)
class Stage:
    """``repeats`` inverted-residual blocks; the first one has ``stride``."""

    expansion: int
    channels: int
    repeats: int
    stride: int


@dataclass(frozen=True)
class NetConfig:
    """Shape of the network. The defaults are the shipped architecture."""

    embedding_dim: int = 128
    stem_channels: int = 64
    stages: tuple[Stage, ...] = (
        Stage(1, 64, 1, 2),   # 56 -> 28, depthwise-separable (no expansion at 56x56)
        Stage(2, 64, 2, 1),
        Stage(2, 128, 1, 2),  # 28 -> 14
        Stage(2, 128, 3, 1),
        Stage(4, 128, 1, 2),  # 14 -> 7
        Stage(2, 128, 3, 1),  # blocks at 7x7 are cheap (3 M MACs each)
    )
    head_channels: int = 512
    activation: str = "relu"  # "relu" | "relu6"
    dropout: float = 0.0  # before the embedding layer; training only

    def __post_init__(self) -> None:
        if self.activation not in ("relu", "relu6"):
            raise ValueError(f"activation must be relu or relu6, got {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def net_config_from_dict(d: Mapping[str, Any]) -> NetConfig:
    """A :class:`NetConfig` from its ``dataclasses.asdict`` form; missing keys take their defaults.

    ``stages`` may hold dicts (``{expansion, channels, repeats, stride}``),
    ``[e, c, r, s]`` lists or :class:`Stage` objects. An unknown key or a bad
    value is a ValueError naming it (callers wrap it into their own error).
    """
    d = dict(d)
    known = {f.name for f in dataclasses.fields(NetConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "stages" in d:
        try:
            d["stages"] = tuple(s if isinstance(s, Stage) else Stage(**s) if isinstance(s, Mapping)
                                else Stage(*map(int, s)) for s in d["stages"])
        except (TypeError, ValueError):
            raise ValueError("stages: a list of [expansion, channels, repeats, stride]") from None
    try:
        return NetConfig(**d)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _act(kind: str) -> nn.Module:
    return nn.ReLU6(inplace=True) if kind == "relu6" else nn.ReLU(inplace=True)


class ConvBN(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d, optionally + activation."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 activation: str | None = "relu", padding: int | None = None) -> None:
        pad = kernel // 2 if padding is None else padding
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if activation:
            layers.append(_act(activation))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when expansion is 1), 3x3 depthwise, linear 1x1 project; skip when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, activation: str) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBN(cin, hidden, 1, activation=activation))
        layers.append(ConvBN(hidden, hidden, 3, stride, groups=hidden, activation=activation))
        layers.append(ConvBN(hidden, cout, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class FaceEmbeddingNet(nn.Module):
    """112x112 RGB crop (preprocessed, NCHW) -> L2-normalised ``embedding_dim`` vector."""

    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or NetConfig()
        act = cfg.activation
        c = cfg.stem_channels
        layers: list[nn.Module] = [
            ConvBN(3, c, 3, 2, activation=act),             # 112 -> 56
            ConvBN(c, c, 3, 1, groups=c, activation=act),   # depthwise
        ]
        stride_total = 2
        for stage in cfg.stages:
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                layers.append(InvertedResidual(c, stage.channels, stride, stage.expansion, act))
                c = stage.channels
            stride_total *= stage.stride
        if INPUT_SIZE % stride_total:
            raise ValueError(f"total stride {stride_total} does not divide the {INPUT_SIZE} px input")
        grid = INPUT_SIZE // stride_total
        layers.append(ConvBN(c, cfg.head_channels, 1, activation=act))
        self.features = nn.Sequential(*layers)
        # GDC: one 7x7 depthwise filter per channel, linear (no activation)
        self.gdc = ConvBN(cfg.head_channels, cfg.head_channels, grid, 1, groups=cfg.head_channels,
                          activation=None, padding=0)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.embedding = nn.Sequential(nn.Linear(cfg.head_channels, cfg.embedding_dim, bias=False),
                                       nn.BatchNorm1d(cfg.embedding_dim))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding before L2 normalisation (for margin-based heads, if ever used)."""
        x = self.gdc(self.features(x)).flatten(1)
        return self.embedding(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward_raw(x), dim=1)


# --- export -----------------------------------------------------------------------------
def _fold_into(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    """y = gamma (W x + b - mean) / sqrt(var + eps) + beta  ->  W' x + b'."""
    w = layer.weight.detach()
    mean, var = bn.running_mean.detach(), bn.running_var.detach()
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(mean)
    layer.weight = nn.Parameter(w * scale.reshape(-1, *([1] * (w.dim() - 1))))
    layer.bias = nn.Parameter((bias - mean) * scale + beta)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every BatchNorm folded into the Conv2d / Linear before it.

    The exported graph then has no BatchNorm nodes (fewer ops, and INT8
    calibration sees the layers as they will run). The original model is
    left untouched. A BatchNorm is folded when it directly follows a
    Conv2d / Linear inside the same ``nn.Sequential``; any other BatchNorm
    is an error, since it would silently stay unfolded.
    """
    folded = copy.deepcopy(model).eval()
    done: set[int] = set()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for prev, name in zip(names, names[1:]):
            layer, bn = module._modules[prev], module._modules[name]
            if isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) and isinstance(layer, (nn.Conv2d, nn.Linear)):
                if bn.running_mean is None or bn.running_var is None:
                    raise ValueError(f"BatchNorm {name} keeps no running statistics; cannot fold")
                _fold_into(layer, bn)
                module._modules[name] = nn.Identity()
                done.add(id(bn))
    left = [n for n, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"BatchNorm layers not preceded by a conv/linear in a Sequential: {left}")
    log.debug("folded %d BatchNorm layers", len(done))
    return folded


# --- Siamese forms ------------------------------------------------------------------------
class SiameseNetwork(nn.Module):
    """The same network applied to two (pairs) or three (triplets) inputs.

    One set of weights by construction. The inputs are concatenated into one
    batch, so a single forward pass embeds them and BatchNorm sees one set of
    statistics for all branches.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) not in (2, 3):
            raise ValueError(f"SiameseNetwork takes 2 (pair) or 3 (triplet) inputs, got {len(inputs)}")
        sizes = [x.shape[0] for x in inputs]
        return tuple(self.net(torch.cat(inputs, dim=0)).split(sizes, dim=0))


class BinaryHead(nn.Module):
    """Logistic regression on |f(a) - f(b)|: P(same person).

    Zero-initialised (P = 0.5 everywhere): the problem is convex in the head's
    weights, so no initial guess is needed. Exported as the bundle manifest's
    ``binary_head`` (see :meth:`to_manifest`).
    """

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Log-odds of "same", shape (n,); train with BCE on these (numerically stable)."""
        return self.linear((a - b).abs()).squeeze(-1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(a, b))

    def to_manifest(self, threshold: float = 0.5):
        """The head as :class:`facegate.edge.embed.bundle.BinaryHead` for a bundle's manifest."""
        from facegate.edge.embed.bundle import BinaryHead as ManifestHead

        w = self.linear.weight.detach().cpu().reshape(-1).tolist()
        return ManifestHead(tuple(float(v) for v in w), float(self.linear.bias.detach().cpu()[0]), float(threshold))
