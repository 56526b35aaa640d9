"""The embedder protocol: a face in a frame -> an L2-normalised vector.

Each embedder owns its preprocessing (``prepare``): our own networks take the
aligned 112x112 crop, dlib takes its own 150x150 chip, FaceNet a margin crop
of the detector's box. Callers only hand over the frame and the detection.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import EmbeddingShapeError
from ..types import Detection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thresholds:
    """Distance thresholds of one model: the default and those measured per FMR.

    Distances are Euclidean between L2-normalised embeddings. ``by_fmr`` maps
    a false-match rate (e.g. "1e-3") to the threshold that gave it on the
    LFW-half impostor pairs; ``source`` says where the numbers came from.
    """

    default: float
    by_fmr: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def at(self, fmr: str | None) -> float:
        if fmr is None:
            return self.default
        try:
            return self.by_fmr[fmr]
        except KeyError:
            known = ", ".join(sorted(self.by_fmr)) or "none"
            raise ValueError(f"no threshold measured at FMR {fmr} (known: {known})") from None


@runtime_checkable
class Embedder(Protocol):
    name: str
    model_id: str
    dim: int
    thresholds: Thresholds

    def prepare(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        """The model's input for one face of a BGR frame (crop, resize, colour)."""
        ...

    def embed_prepared(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 L2-normalised embeddings of prepared inputs."""
        ...

    def embed(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray: ...

    def close(self) -> None: ...


class EmbedderBase:
    """Shared plumbing: batching the faces of a frame and checking the output."""

    name: str = "embedder"
    model_id: str = ""
    dim: int = 0
    thresholds: Thresholds
    model_path: Path | None = None  # the embedding model's file (for size reports)

    def prepare(self, image: np.ndarray, detection: Detection) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def embed_prepared(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        if len(inputs) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self._forward(inputs), dtype=np.float32).reshape(len(inputs), -1)
        if out.shape[1] != self.dim:
            raise EmbeddingShapeError(f"{self.name}: model returned {out.shape[1]}-d embeddings, expected {self.dim}")
        return l2_normalise(out)

    def embed(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        return self.embed_prepared([self.prepare(image, d) for d in detections])

    def close(self) -> None:
        """Release the runtime; safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_id}>"


def l2_normalise(x: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(x)):
        raise EmbeddingShapeError("model returned non-finite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms < 1e-12):
        raise EmbeddingShapeError("model returned a zero embedding")
    return (x / norms).astype(np.float32)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def make_model_id(name: str, sha256: str) -> str:
    """``name`` + short sha256: two files with one name never share an id."""
    return f"{name}-{sha256[:12]}"


def box_crop(image: np.ndarray, box: Sequence[float], margin: float, size: int) -> np.ndarray:
    """Crop ``box`` grown by ``margin`` (fraction of its size) per side, resized to ``size``.

    The grown box is clipped to the frame, as FaceNet's own preprocessing
    does, so its published accuracy carries over.
    """
    import cv2

    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left = int(np.clip(np.floor(x1 - margin * w), 0, width - 1))
    top = int(np.clip(np.floor(y1 - margin * h), 0, height - 1))
    right = int(np.clip(np.ceil(x2 + margin * w), left + 1, width))
    bottom = int(np.clip(np.ceil(y2 + margin * h), top + 1, height))
    patch = image[top:bottom, left:right]
    shrink = patch.shape[0] > size or patch.shape[1] > size
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
