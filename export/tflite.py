"""PyTorch -> TFLite (fp32, and full INT8 through PT2E) with litert-torch (extra ``tflite-export``).

No TensorFlow: litert-torch lowers ``torch.export`` programs itself.

Layout: TFLite kernels are NHWC, so the exported model takes **NHWC** input
(a permute at the graph's entry that the converter folds into the first
convolution); the bundle's :class:`InputSpec` says ``layout="nhwc"`` and the
device's :func:`to_tensor` honours it, so no transpose runs on the device.

Output: the raw embedding (the device L2-normalises), as for ONNX.

Full INT8 (PT2E): ``torch.export`` -> ``prepare_pt2e`` with litert-torch's
``PT2EQuantizer`` (per-channel symmetric int8 weights, per-tensor affine int8
activations with histogram observers) -> calibration on real aligned crops ->
``convert_pt2e`` -> ``litert_torch.convert(..., quant_config=...)``. The
converter removes the quantise / dequantise pair at the model's boundary, so
the INT8 model's input and output tensors are **int8** with their own scale and
zero point. The manifest says ``dtype="int8"``: the float input
``(x - mean) / std`` is quantised with the input tensor's parameters (for our
[-1, 1] input that is essentially ``pixel - 128``) and the output dequantised,
both by :class:`facegate.edge.embed.tflite.TfliteEmbedder`, which reads the
parameters from the model itself.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from facegate.edge.errors import BackendUnavailable
from facegate.edge.embed.bundle import InputSpec
from facegate.models.data import preprocess

from . import TFLITE_EXPORT_HINT
from .onnx import export_module, net_input

log = logging.getLogger(__name__)

def tflite_input(net: nn.Module, int8: bool = False) -> InputSpec:
    """The network's own input (:func:`facegate.export.onnx.net_input`), channels last.

    Full-INT8 bundles take the same values quantised with the model's input
    scale / zero point (``dtype`` int8).
    """
    return replace(net_input(net), layout="nhwc", dtype="int8" if int8 else "float32")


def _litert_torch():
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    try:
        import litert_torch
    except ImportError as exc:
        raise BackendUnavailable(f"TFLite export needs litert-torch: {TFLITE_EXPORT_HINT}") from exc
    litert_torch.config.show_progress = False
    return litert_torch


class ChannelsLast(nn.Module):
    """NHWC input -> the wrapped NCHW module."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.permute(0, 3, 1, 2))


def _tflite_module(net: nn.Module) -> nn.Module:
    return ChannelsLast(export_module(net)).eval()


def _example(input_size: int, batch: int = 1) -> tuple[torch.Tensor]:
    return (torch.zeros(batch, input_size, input_size, 3),)


def export_tflite(net: nn.Module, path: str | Path, input_size: int | None = None) -> Path:
    """Write ``net`` as an fp32 TFLite file (BatchNorm folded, NHWC float input); returns the path."""
    litert_torch = _litert_torch()
    input_size = input_size or net_input(net).size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        model = litert_torch.convert(_tflite_module(net), _example(input_size))
    model.export(str(path))
    log.info("wrote %s (%.2f MB)", path, path.stat().st_size / 1e6)
    return path


def export_tflite_int8(net: nn.Module, path: str | Path, calibration_crops: np.ndarray | Sequence[np.ndarray],
                       input_size: int | None = None, batch: int = 16) -> Path:
    """Write ``net`` as a full-INT8 TFLite file calibrated on aligned BGR uint8 crops; returns the path.

    Input and output tensors are int8 (see the module docstring); weights are
    per-channel int8, activations per-tensor int8.
    """
    litert_torch = _litert_torch()
    from litert_torch.quantize import pt2e_quantizer as pq
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    crops = np.asarray(calibration_crops)
    if crops.ndim != 4 or crops.dtype != np.uint8 or len(crops) == 0:
        raise ValueError(f"calibration crops must be BGR uint8 (N, H, W, 3), got {crops.dtype} {crops.shape}")
    input_size = input_size or net_input(net).size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = _tflite_module(net)
    dim = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        # dynamic batch only for calibration speed; the converted model is re-traced at batch 1
        graph = torch.export.export(module, _example(input_size, 2), dynamic_shapes=({0: dim},)).module()
        quantizer = pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(graph, quantizer)
        for k in range(0, len(crops), batch):
            prepared(torch.from_numpy(preprocess(crops[k:k + batch], tflite_input(net))))
        quantized = convert_pt2e(prepared, fold_quantize=False)
        move_exported_model_to_eval(quantized)
        quantized.training = False  # what litert-torch checks before warning about training mode
        model = litert_torch.convert(quantized, _example(input_size), quant_config=QuantConfig(pt2e_quantizer=quantizer))
    model.export(str(path))
    log.info("wrote %s (%.2f MB) calibrated on %d crops", path, path.stat().st_size / 1e6, len(crops))
    return path


def litert_torch_version() -> str:
    try:
        from importlib.metadata import version

        return version("litert-torch")
    except Exception:  # not installed as a distribution
        return "unknown"
