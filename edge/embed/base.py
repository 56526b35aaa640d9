"""The embedder protocol: a face crop -> an L2-normalised vector.

Each embedder declares the crop it needs (:class:`~facegate.edge.types.CropSpec`:
our bundles an aligned crop, FaceNet a margin crop of the detector's box,
dlib a wide box crop for its own chip); alignment cuts it once per face and
the embedder consumes that :class:`~facegate.edge.types.FaceCrop`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import EmbeddingShapeError
from ..types import ALIGN_112, CropSpec, Detection, FaceCrop

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
    crop: CropSpec

    def prepare(self, crop: FaceCrop) -> np.ndarray:
        """The model's input for one face, from the crop alignment cut for it."""
        ...

    def embed_prepared(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 L2-normalised embeddings of prepared inputs."""
        ...

    def embed_crops(self, crops: Sequence[FaceCrop]) -> np.ndarray: ...

    def embed(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray: ...

    def close(self) -> None: ...


class EmbedderBase:
    """Shared plumbing: batching the faces of a frame and checking the output."""

    name: str = "embedder"
    model_id: str = ""
    dim: int = 0
    thresholds: Thresholds
    crop: CropSpec = ALIGN_112
    model_path: Path | None = None  # the embedding model's file (for size reports)

    def prepare(self, crop: FaceCrop) -> np.ndarray:  # pragma: no cover
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

    def embed_crops(self, crops: Sequence[FaceCrop]) -> np.ndarray:
        return self.embed_prepared([self.prepare(c) for c in crops])

    def embed(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """Cut this embedder's crop of each detection in ``image`` and embed them (no quality gate)."""
        from ..align import cut_crop

        crops = []
        for d in detections:
            img, matrix = cut_crop(image, d, self.crop)
            crops.append(FaceCrop(img, d, None, self.crop, matrix))
        return self.embed_crops(crops)

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
