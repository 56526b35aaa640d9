"""Online distillation: the teacher embeds exactly the augmented view the student sees.

The cached mode of the ladder (:mod:`facegate.models.viewcache`) stores the
teacher's embedding of each face and its mirror, so the student may see no
other augmentation. Where compute allows (an accelerator, or patience), the
teacher runs in the loop instead: every batch is augmented once, on the
device, as a door camera would change a face (a few pixels and degrees of
alignment jitter, light, contrast, blur, an IR camera's grey), and both
networks see that same tensor. A student with a smaller input gets the same
augmented face resized, as the door would cut it at its own size.

Everything here works on tensors already on the training device, so a batch
never leaves the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class OnlineAugment:
    """Probabilities and ranges of the in-loop augmentation (all uniform)."""

    p_affine: float = 0.5
    max_shift: float = 4.0  # px at the crop's size
    scale: tuple[float, float] = (0.92, 1.08)
    max_rotation: float = 8.0  # degrees
    p_photometric: float = 0.8
    brightness: float = 25.0  # +- grey levels
    contrast: tuple[float, float] = (0.7, 1.3)
    p_grey: float = 0.1  # an IR camera's frame
    p_blur: float = 0.15  # a face farther away: down- and up-sampled
    blur_scale: tuple[float, float] = (0.45, 0.8)


def _u(n: int, lo: float, hi: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def augment(crops: torch.Tensor, flips: torch.Tensor, gen: torch.Generator,
            cfg: OnlineAugment = OnlineAugment()) -> torch.Tensor:
    """BGR uint8 crops (N, H, W, 3) on the device -> RGB float (N, 3, H, W) in [0, 255], augmented."""
    n, h, w, _ = crops.shape
    dev = crops.device
    x = crops.permute(0, 3, 1, 2).flip(1).float()  # BGR -> RGB
    x = torch.where(flips[:, None, None, None], x.flip(3), x)
    if cfg.p_affine > 0:
        on = torch.rand(n, generator=gen, device=dev) < cfg.p_affine
        s = torch.where(on, _u(n, *cfg.scale, gen, dev), torch.ones(n, device=dev))
        r = torch.where(on, _u(n, -cfg.max_rotation, cfg.max_rotation, gen, dev), torch.zeros(n, device=dev))
        r = r * math.pi / 180
        tx = torch.where(on, _u(n, -cfg.max_shift, cfg.max_shift, gen, dev), torch.zeros(n, device=dev)) * 2 / w
        ty = torch.where(on, _u(n, -cfg.max_shift, cfg.max_shift, gen, dev), torch.zeros(n, device=dev)) * 2 / h
        cos, sin = torch.cos(r) / s, torch.sin(r) / s
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.p_blur > 0:
        f = float(_u(1, *cfg.blur_scale, gen, dev))
        on = torch.rand(n, generator=gen, device=dev) < cfg.p_blur
        small = F.interpolate(x, scale_factor=f, mode="bilinear", antialias=True, align_corners=False)
        x = torch.where(on[:, None, None, None], F.interpolate(small, size=(h, w), mode="bilinear",
                                                               align_corners=False), x)
    if cfg.p_photometric > 0:
        on = (torch.rand(n, generator=gen, device=dev) < cfg.p_photometric)[:, None, None, None]
        c = _u(n, *cfg.contrast, gen, dev)[:, None, None, None]
        b = _u(n, -cfg.brightness, cfg.brightness, gen, dev)[:, None, None, None]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = torch.where(on, (x - mean) * c + mean + b, x)
    if cfg.p_grey > 0:
        on = (torch.rand(n, generator=gen, device=dev) < cfg.p_grey)[:, None, None, None]
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand(-1, 3, -1, -1)
        x = torch.where(on, grey, x)
    return x.clamp(0, 255).round()


def plain(crops: torch.Tensor, flips: torch.Tensor | None = None) -> torch.Tensor:
    """The same layout as :func:`augment` with nothing but the mirror: evaluation views."""
    x = crops.permute(0, 3, 1, 2).flip(1).float()
    if flips is not None:
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
    return x


def network_input(rgb: torch.Tensor, size: int, mean: float = 127.5, std: float = 128.0) -> torch.Tensor:
    """RGB [0, 255] at the crop's size -> a network's input at ``size`` (FaceNet's scaling)."""
    if rgb.shape[-1] != size:
        rgb = F.interpolate(rgb, size=(size, size), mode="bilinear", antialias=True, align_corners=False).round()
    return ((rgb - mean) / std).contiguous(memory_format=torch.channels_last)
