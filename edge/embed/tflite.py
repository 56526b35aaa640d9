"""Our own networks, from a TFLite model bundle, run by LiteRT (extra ``tflite``).

The interpreter comes from ``ai_edge_litert`` (LiteRT, the current package)
or, where that is what a Raspberry Pi image has, the older ``tflite_runtime``.
XNNPACK is the interpreter's default CPU delegate in both.

Quantised models: an INT8 model made by litert-torch takes and returns int8
tensors (the converter removes the boundary quantise / dequantise). The float
input ``(x - mean) / std`` from the manifest is then quantised here with the
input tensor's own scale and zero point, and the output is dequantised with
the output tensor's: the parameters are read from the model, never guessed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BackendUnavailable, BundleError, ModelError
from .bundle import BundleEmbedder
from .onnx import to_tensor

log = logging.getLogger(__name__)

TFLITE_HINT = "pip install 'facegate[tflite]'"


def interpreter_class() -> Any:
    """LiteRT's ``Interpreter`` (ai-edge-litert, else tflite-runtime), or :class:`BackendUnavailable`."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter
    except ImportError:
        raise BackendUnavailable(f"TFLite bundles need the LiteRT runtime: {TFLITE_HINT}") from None


def _quantise(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    q = np.round(x / np.float32(scale)) + zero
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def _dequantise(y: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale:
        return (y.astype(np.float32) - zero) * np.float32(scale)
    return y.astype(np.float32, copy=False)


class TfliteEmbedder(BundleEmbedder):
    """Embeds aligned crops with a TFLite model bundle (fp32 or INT8)."""

    format = "tflite"

    def __init__(self, bundle: str | Path, threads: int = 1, verify: bool = True) -> None:
        Interpreter = interpreter_class()
        super().__init__(bundle, verify=verify)
        manifest, model = self.manifest, self.model_path
        self.threads = max(1, int(threads))
        try:
            self._interp = Interpreter(model_path=str(model), num_threads=self.threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{model}: LiteRT cannot load it ({exc})") from None
        self._lock = threading.Lock()
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        self._batch = int(self._in["shape"][0])
        self._check_input()
        spec = manifest.input
        # "int8": the float preprocessing, then the input tensor's quantisation; "uint8": raw pixels
        self._spec = replace(spec, dtype="float32") if spec.dtype == "int8" else spec
        self._quantise_input = spec.dtype != "uint8" and np.issubdtype(self._in["dtype"], np.integer)
        log.info("loaded %s (%d threads, input %s %s)", self.model_id, self.threads,
                 np.dtype(self._in["dtype"]).name, list(self._in["shape"]))

    def _check_input(self) -> None:
        spec = self.manifest.input
        channels = 1 if spec.colour == "grey" else 3
        want = [spec.size, spec.size, channels] if spec.layout == "nhwc" else [channels, spec.size, spec.size]
        shape = [int(v) for v in self._in["shape"][1:]]
        if shape != want:
            raise BundleError(f"{self.manifest.name}: the model's input is {shape}, "
                              f"the manifest ({spec.layout}, {spec.colour}, {spec.size} px) implies {want}")

    def _resize(self, n: int) -> bool:
        """Set the interpreter's batch size to ``n``; False (and batch 1) if the model cannot take ``n``."""
        if n == self._batch:
            return True
        shape = [n, *(int(v) for v in self._in["shape"][1:])]
        try:
            self._interp.resize_tensor_input(self._in["index"], shape)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            if n == 1:
                raise ModelError(f"{self.model_id}: cannot run a single face ({exc})") from None
            log.debug("%s: cannot resize to batch %d (%s); running faces one by one", self.model_id, n, exc)
            self._resize(1)
            return False
        self._batch = n
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        return True

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._quantise_input:
            x = _quantise(x, self._in)
        self._interp.set_tensor(self._in["index"], x.astype(self._in["dtype"], copy=False))
        self._interp.invoke()
        return _dequantise(self._interp.get_tensor(self._out["index"]), self._out)

    def _forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        x = to_tensor(inputs, self._spec)
        with self._lock:
            if self._interp is None:
                raise ModelError(f"{self.model_id}: embedder is closed")
            if self._resize(len(x)):
                return self._run(x).reshape(len(x), -1)
            return np.concatenate([self._run(x[i:i + 1]).reshape(1, -1) for i in range(len(x))])

    def close(self) -> None:
        self._interp = None
