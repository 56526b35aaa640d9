"""Runners: a model file in, raw outputs out, one small class per runtime.

Kept apart from what a model means (:class:`~.bundle.BundleEmbedder` does the
preprocessing and the checks), so a new runtime is one class and one entry
in :data:`RUNNERS`.

LiteRT: the interpreter comes from ``ai_edge_litert`` or, where that is what a
Raspberry Pi image has, the older ``tflite_runtime``; XNNPACK is its default
CPU delegate. An INT8 model made by litert-torch takes and returns int8
tensors: the float input is then quantised with the input tensor's own scale
and zero point and the output dequantised with the output tensor's; the
parameters are read from the model, never guessed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import BackendUnavailable, BundleError, ModelError
from ..runtime import ort_session

log = logging.getLogger(__name__)


class Runner(Protocol):
    """Runs one model file on a preprocessed float32 or uint8 batch."""

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class OnnxRunner:
    """onnxruntime on the CPU, with the device's session options."""

    def __init__(self, path: str | Path, threads: int = 1, input_shape: list[int] | None = None) -> None:
        self._session = ort_session(path, threads)
        self._input = self._session.get_inputs()[0].name
        self.path = Path(path)

    def run(self, x: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise ModelError(f"{self.path}: runner is closed")
        return self._session.run(None, {self._input: x})[0]

    def close(self) -> None:
        self._session = None


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


class LiteRTRunner:
    """A TFLite interpreter; quantises int8 inputs and resizes the batch as needed."""

    def __init__(self, path: str | Path, threads: int = 1, input_shape: list[int] | None = None,
                 quantise_input: bool = True) -> None:
        Interpreter = interpreter_class()
        self.path = Path(path)
        self.threads = max(1, int(threads))
        try:
            self._interp = Interpreter(model_path=str(path), num_threads=self.threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: LiteRT cannot load it ({exc})") from None
        self._lock = threading.Lock()
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        self._batch = int(self._in["shape"][0])
        shape = [int(v) for v in self._in["shape"][1:]]
        if input_shape is not None and shape != list(input_shape):
            raise BundleError(f"{self.path.parent.name}: the model's input is {shape}, "
                              f"the manifest implies {list(input_shape)}")
        self.quantise = quantise_input and np.issubdtype(self._in["dtype"], np.integer)
        log.info("LiteRT %s (%d threads, input %s %s)", self.path.name, self.threads,
                 np.dtype(self._in["dtype"]).name, list(self._in["shape"]))

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
                raise ModelError(f"{self.path}: cannot run a single face ({exc})") from None
            log.debug("%s: cannot resize to batch %d (%s); running faces one by one", self.path, n, exc)
            self._resize(1)
            return False
        self._batch = n
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        return True

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if self.quantise:
            x = _quantise(x, self._in)
        self._interp.set_tensor(self._in["index"], x.astype(self._in["dtype"], copy=False))
        self._interp.invoke()
        return _dequantise(self._interp.get_tensor(self._out["index"]), self._out)

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._interp is None:
                raise ModelError(f"{self.path}: runner is closed")
            if self._resize(len(x)):
                return self._invoke(x).reshape(len(x), -1)
            return np.concatenate([self._invoke(x[i:i + 1]).reshape(1, -1) for i in range(len(x))])

    def close(self) -> None:
        self._interp = None


#: Bundle ``format`` -> runner class.
RUNNERS: dict[str, Any] = {"onnx": OnnxRunner, "tflite": LiteRTRunner}
