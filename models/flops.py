"""Count a network's multiply-accumulates with forward hooks.

Only Conv2d and Linear are counted: they are >99 % of the arithmetic of a
MobileFaceNet-style net; BatchNorm folds into the convolutions for export and
ReLU / additions are comparison- or add-only. ``flops`` is ``2 * macs`` (one
multiply plus one add); papers that quote "FLOPs" for MobileFaceNet usually
mean MACs, so both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    macs: int
    params: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class CostReport:
    """Cost of one forward pass of a single input (batch size 1)."""

    macs: int
    params: int
    layers: tuple[LayerCost, ...] = field(default=(), repr=False)

    @property
    def flops(self) -> int:
        """2 x MACs: the figure this project budgets ("FLOPs")."""
        return 2 * self.macs

    def summary(self) -> str:
        return (f"{self.params / 1e6:.3f} M params, {self.macs / 1e6:.1f} M MACs, "
                f"{self.flops / 1e9:.3f} GFLOPs (2 x MACs)")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_cost(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 112, 112)) -> CostReport:
    """MACs of Conv2d and Linear layers for one input of ``input_shape`` (batch must be 1).

    Runs the model in eval mode under ``no_grad`` and restores its mode.
    """
    if input_shape[0] != 1:
        raise ValueError(f"count_cost needs batch size 1, got {input_shape}")
    layers: list[LayerCost] = []
    handles = []

    def hook(name: str):
        def fn(module: nn.Module, inputs, output) -> None:
            out = output if isinstance(output, torch.Tensor) else output[0]
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                macs = out.numel() * (module.in_channels // module.groups) * kh * kw
            else:  # nn.Linear: every output element needs in_features MACs
                macs = out.numel() * module.in_features
            params = sum(p.numel() for p in module.parameters(recurse=False))
            layers.append(LayerCost(name, type(module).__name__, int(macs), int(params), tuple(out.shape)))

        return fn

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            param = next(model.parameters(), None)
            model(torch.zeros(input_shape, device=param.device if param is not None else "cpu"))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return CostReport(macs=sum(layer.macs for layer in layers), params=count_parameters(model), layers=tuple(layers))
