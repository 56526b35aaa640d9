"""Our own networks, from a model bundle, run by onnxruntime."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelError
from ..runtime import ort_session
from .bundle import BundleEmbedder, InputSpec

log = logging.getLogger(__name__)


def to_tensor(crops: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Stack aligned BGR uint8 crops into the tensor a bundle's manifest asks for."""
    import cv2

    batch = np.stack(crops)
    if spec.colour == "rgb":
        batch = batch[..., ::-1]
    elif spec.colour == "grey":
        batch = np.stack([cv2.cvtColor(c, cv2.COLOR_BGR2GRAY) for c in crops])[..., None]
    if spec.dtype == "uint8":
        x = np.ascontiguousarray(batch, dtype=np.uint8)
    else:
        mean = np.asarray(spec.mean, dtype=np.float32)
        std = np.asarray(spec.std, dtype=np.float32)
        x = (batch.astype(np.float32) - mean) / std
    if spec.layout == "nchw":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


class OnnxEmbedder(BundleEmbedder):
    """Embeds aligned crops with an ONNX model bundle (fp32 or INT8)."""

    format = "onnx"

    def __init__(self, bundle: str | Path, threads: int = 1, verify: bool = True) -> None:
        super().__init__(bundle, verify=verify)
        self._session = ort_session(self.model_path, threads)
        self._input = self._session.get_inputs()[0].name
        log.info("loaded %s (%d threads)", self.model_id, threads)

    def _forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        if self._session is None:
            raise ModelError(f"{self.model_id}: embedder is closed")
        return self._session.run(None, {self._input: to_tensor(inputs, self.manifest.input)})[0]

    def close(self) -> None:
        self._session = None
