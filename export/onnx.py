"""PyTorch -> ONNX (fp32) and ONNX -> static INT8 (QDQ) for onnxruntime.

The exported graph is the network with every BatchNorm folded, in eval mode,
with a dynamic batch axis. Its output is the *raw* embedding (before L2
normalisation): every facegate embedder normalises on the device
(:func:`facegate.edge.embed.base.l2_normalise`), and leaving the division out
of the graph keeps the INT8 model's last quantised tensor the embedding itself.

INT8 is onnxruntime's static quantisation as measured best on this hardware:
``quant_pre_process`` (shape inference without the symbolic pass, graph
optimisation), then ``quantize_static`` in QDQ format, per-channel int8
weights, MinMax calibration over real aligned crops preprocessed by
:func:`facegate.models.data.preprocess` (the device's own function).

Activations are **uint8** by default: with uint8 activations onnxruntime's CPU
provider fuses every Conv into QLinearConv and every residual Add into
QLinearAdd (default network: 1.06 ms per face at 1 thread on the x86 dev box),
while with int8 activations 11 depthwise Convs and the 8 Adds stay float
between Quantize/Dequantize pairs plus 24 Transposes (2.4 ms, no faster than
fp32's 2.3 ms). Accuracy is the same either way. (On x86 CPUs without
AVX512-VNNI / AVX-VNNI, uint8 x int8 can saturate: onnxruntime's documented
remedy is ``reduce_range``; the Pi's ARM cores and this box are not affected.)
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from facegate.edge.embed.bundle import InputSpec
from facegate.edge.types import CropSpec
from facegate.models.data import TRAIN_INPUT, preprocess
from facegate.models.network import fold_batchnorm

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "input", "embedding"
#: The ONNX bundles' input: exactly the training preprocessing (RGB, (x - 127.5) / 127.5, NCHW, float32).
ONNX_INPUT = TRAIN_INPUT


def net_input(net: nn.Module) -> InputSpec:
    """The input a network declares (``input_spec``: the Inception-ResNet rungs), else the small network's.

    A rung read from its checkpoint also carries the crop it was trained on
    (``crop``), which the manifest passes on to the door's alignment.
    """
    spec = getattr(net, "input_spec", ONNX_INPUT)
    crop = getattr(net, "crop", None)
    return replace(spec, crop=CropSpec(**crop)) if crop else spec


class RawEmbedding(nn.Module):
    """The network's embedding before L2 normalisation (the device normalises)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_raw(x)


def export_module(net: nn.Module) -> nn.Module:
    """What every exporter converts: a BN-folded eval-mode copy returning the raw embedding."""
    return RawEmbedding(fold_batchnorm(net)).eval()


def export_onnx(net: nn.Module, path: str | Path, input_size: int | None = None, opset: int | None = None) -> Path:
    """Write ``net`` as a self-contained fp32 ONNX file (BatchNorm folded, dynamic batch); returns the path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = export_module(net)
    input_size = input_size or net_input(net).size
    example = (torch.zeros(2, 3, input_size, input_size),)
    batch = torch.export.Dim("batch", min=1, max=1024)
    kwargs = {} if opset is None else {"opset_version": opset}
    with torch.no_grad():
        program = torch.onnx.export(module, example, dynamo=True, external_data=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: batch},), optimize=True, verbose=False, **kwargs)
    program.save(str(path), external_data=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    log.info("wrote %s (%.2f MB)", path, path.stat().st_size / 1e6)
    return path


def _as_batch(crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        raise ValueError(f"crops must be BGR uint8 (N, H, W, 3), got {crops.dtype} {crops.shape}")
    if len(crops) == 0:
        raise ValueError("no calibration crops")
    return crops


class CropReader:
    """onnxruntime ``CalibrationDataReader`` over aligned BGR uint8 crops, preprocessed as on the device."""

    def __init__(self, crops: np.ndarray | Sequence[np.ndarray], input_name: str = INPUT_NAME, batch: int = 16,
                 spec: InputSpec = ONNX_INPUT) -> None:
        self.crops = _as_batch(crops)
        self.spec = spec
        self.input_name = input_name
        self.batch = int(batch)
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for k in range(0, len(self.crops), self.batch):
            yield {self.input_name: preprocess(self.crops[k:k + self.batch], self.spec)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def quantize_onnx_int8(fp32_path: str | Path, out_path: str | Path,
                       calibration_crops: np.ndarray | Sequence[np.ndarray], activation_type: str = "uint8",
                       reduce_range: bool = False, spec: InputSpec = ONNX_INPUT,
                       method: str = "minmax") -> Path:
    """Static INT8 (QDQ, per-channel int8 weights, MinMax activations) of an fp32 ONNX file; returns ``out_path``.

    ``calibration_crops``: aligned BGR uint8 (N, 112, 112, 3) crops from facegate's
    own pipeline (a few hundred from the training cache are plenty).
    ``activation_type``: "uint8" (default, see the module docstring) or "int8".
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CropReader, CalibrationDataReader):
        pass

    act = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}.get(activation_type)
    if act is None:
        raise ValueError(f"activation_type must be uint8 or int8, got {activation_type!r}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    reader = _Reader(calibration_crops, input_name, spec=spec)
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}.get(method)
    if calibrate is None:
        raise ValueError(f"method must be minmax, percentile or entropy, got {method!r}")
    with tempfile.TemporaryDirectory(prefix="facegate-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=act, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                        calibrate_method=calibrate)
    onnx.checker.check_model(onnx.load(str(out_path)), full_check=True)
    log.info("wrote %s (%.2f MB) calibrated on %d crops", out_path, out_path.stat().st_size / 1e6,
             len(reader.crops))
    return out_path
