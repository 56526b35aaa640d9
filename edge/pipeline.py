"""One frame in, judged faces out: detect -> align (+quality) -> embed.

The same object serves enrollment, the CLI, evaluation and the daemon, so a
face is processed identically wherever it is seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .align import QualityThresholds, align
from .detect.base import FaceDetector
from .embed.base import Embedder
from .errors import FaceQualityError, MultipleFacesError, NoFaceError
from .imageio import to_bgr
from .types import Detection, Embedding, FaceCrop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceResult:
    """One face of a frame: where it is, how usable, and (if asked) its embedding."""

    crop: FaceCrop
    embedding: Embedding | None

    @property
    def detection(self) -> Detection:
        return self.crop.detection


class FacePipeline:
    def __init__(self, detector: FaceDetector, embedder: Embedder, quality: QualityThresholds | None = None) -> None:
        self.detector = detector
        self.embedder = embedder
        self.quality = quality or QualityThresholds()

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detector.detect(to_bgr(image))

    def faces(self, image: np.ndarray, max_faces: int | None = None, embed: bool = True,
              gated: bool = True) -> list[FaceResult]:
        """Faces of a frame, largest first.

        ``max_faces`` limits the work (the door judges only the largest);
        with ``gated``, faces that fail the quality gate are not embedded.
        """
        image = to_bgr(image)
        detections = self.detector.detect(image)
        if max_faces is not None:
            detections = detections[:max_faces]
        crops = [align(image, d, self.quality) for d in detections]
        if not embed:
            return [FaceResult(c, None) for c in crops]
        todo = [i for i, c in enumerate(crops) if c.quality.ok or not gated]
        vectors = self.embedder.embed(image, [detections[i] for i in todo])
        embs: dict[int, Embedding] = {i: Embedding(v, self.embedder.model_id) for i, v in zip(todo, vectors)}
        return [FaceResult(c, embs.get(i)) for i, c in enumerate(crops)]

    def embed_one(self, image: np.ndarray, *, single: bool = False, gated: bool = True) -> tuple[FaceResult, int]:
        """The embedding of the one face that matters, and how many faces were seen.

        ``single`` refuses frames with several faces (enrollment: whose face
        would it be?); otherwise the largest face is judged.
        Raises NoFaceError, MultipleFacesError or FaceQualityError.
        """
        image = to_bgr(image)
        detections = self.detector.detect(image)
        if not detections:
            raise NoFaceError(f"no face found (minimum face size {self.detector.min_face_size} px)")
        if single and len(detections) > 1:
            sizes = ", ".join(f"{d.size:.0f}" for d in detections)
            raise MultipleFacesError(f"{len(detections)} faces found (sizes {sizes} px); use an image of one person")
        crop = align(image, detections[0], self.quality)
        if gated and not crop.quality.ok:
            raise FaceQualityError("; ".join(crop.quality.reasons))
        vector = self.embedder.embed(image, [crop.detection])[0]
        return FaceResult(crop, Embedding(vector, self.embedder.model_id)), len(detections)


def build_pipeline(
    embedder: str = "facenet",
    threads: int = 1,
    min_face_size: int = 40,
    quality: QualityThresholds | None = None,
) -> FacePipeline:
    """The standard pipeline: MTCNN detection and the named embedder."""
    from .detect.mtcnn import MtcnnDetector
    from .embed import create_embedder

    return FacePipeline(MtcnnDetector(min_face_size=min_face_size, threads=threads),
                        create_embedder(embedder, threads=threads), quality)
