"""dlib's 128-d ResNet (CC0; LFW 99.38% published), the model behind the
``face_recognition`` library: our teacher and the reference to beat.

Extra ``dlib`` (``dlib-bin`` + ``face-recognition-models``). Fed from our
detector's box: dlib's own 5-point shape predictor places its landmarks and
cuts its 150x150 chip, as dlib's model expects. Only the ResNet and the 5-point
files are loaded (the 68-point model has restrictive terms).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import BackendUnavailable, ModelError
from ..types import Detection
from .base import EmbedderBase, Thresholds, make_model_id, sha256_file
from .facenet import reference_thresholds

log = logging.getLogger(__name__)

CHIP = 150


class DlibEmbedder(EmbedderBase):
    name = "dlib"
    dim = 128

    def __init__(self, threads: int = 1, jitters: int = 0) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise BackendUnavailable("dlib needs the dlib extra: pip install 'facegate[dlib]'") from exc
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise BackendUnavailable("dlib's model files need: pip install face-recognition-models")
        folder = Path(list(spec.submodule_search_locations)[0]) / "models"
        resnet = folder / "dlib_face_recognition_resnet_model_v1.dat"
        shape5 = folder / "shape_predictor_5_face_landmarks.dat"
        for f in (resnet, shape5):
            if not f.is_file():
                raise ModelError(f"{f}: dlib model file missing")
        self._dlib = dlib
        self.jitters = int(jitters)
        self.model_id = make_model_id("dlib-resnet-v1", sha256_file(resnet))
        self.model_path = resnet
        self.thresholds = reference_thresholds(self.name, Thresholds(default=0.6, source="dlib's published 0.6"))
        self._predictor = dlib.shape_predictor(str(shape5))
        self._resnet = dlib.face_recognition_model_v1(str(resnet))

    def prepare(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        """dlib's 150x150 RGB chip, aligned by dlib's 5-point predictor in our box."""
        if self._resnet is None:
            raise ModelError("dlib: embedder is closed")
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        x1, y1, x2, y2 = (int(round(v)) for v in detection.box)
        shape = self._predictor(rgb, self._dlib.rectangle(x1, y1, x2, y2))
        return np.asarray(self._dlib.get_face_chip(rgb, shape, size=CHIP, padding=0.25))

    def _forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        if self._resnet is None:
            raise ModelError("dlib: embedder is closed")
        chips = [np.ascontiguousarray(c) for c in inputs]
        return np.asarray(self._resnet.compute_face_descriptor(chips, num_jitters=self.jitters), dtype=np.float32)

    def close(self) -> None:
        self._resnet = None
