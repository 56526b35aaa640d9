"""One frame in, judged faces out: detect -> align (+quality) -> embed.

The same object serves enrollment, the CLI, evaluation and the daemon, so a
face is processed identically wherever it is seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .align import QualityThresholds, align
from .detect.base import FaceDetector
from .embed.base import Embedder
from .errors import FaceQualityError, MultipleFacesError, NoFaceError
from .imageio import to_bgr
from .types import Detection, Embedding, FaceCrop

if TYPE_CHECKING:
    from .config import Config

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

    def largest(self, image: np.ndarray, gated: bool = True,
                lores: np.ndarray | None = None) -> tuple[FaceResult | None, int]:
        """The largest face of a frame (embedded if it passes the gate) and the face count.

        Only the largest face is cropped and embedded: the door judges the
        person nearest the camera, and the work stays constant with crowds.
        The crop is cut once, as the embedder asks (``embedder.crop``), from
        the full frame; ``lores`` (a camera's small stream) is searched instead
        of shrinking ``image``.
        """
        image = to_bgr(image)
        detections = self.detector.detect(image) if lores is None else self.detector.detect(image, lores=lores)
        if not detections:
            return None, 0
        crop = align(image, detections[0], self.quality, self.embedder.crop)
        assert crop.quality is not None
        if gated and not crop.quality.ok:
            return FaceResult(crop, None), len(detections)
        vector = self.embedder.embed_crops([crop])[0]
        return FaceResult(crop, Embedding(vector, self.embedder.model_id)), len(detections)

    def embed_one(self, image: np.ndarray, *, single: bool = False, gated: bool = True) -> tuple[FaceResult, int]:
        """The embedding of the one face that matters, and how many faces were seen.

        ``single`` refuses frames with several faces (enrollment: whose face
        would it be?); otherwise the largest face is judged.
        Raises NoFaceError, MultipleFacesError or FaceQualityError.
        """
        face, seen = self.largest(image, gated=gated)
        if face is None:
            raise NoFaceError(f"no face found (minimum face size {self.detector.min_face_size} px)")
        if single and seen > 1:
            raise MultipleFacesError(f"{seen} faces found; use an image of one person")
        if face.embedding is None:
            raise FaceQualityError("; ".join(face.crop.quality.reasons if face.crop.quality else ()))
        return face, seen


def create_pipeline(cfg: Config) -> FacePipeline:
    """The door's pipeline from its config: detector, embedder and quality gate, as the daemon runs them.

    The CLI builds its pipeline here too (``--config``), so what is enrolled
    is what the door sees.
    """
    from .detect import create_detector
    from .embed import create_embedder

    return FacePipeline(create_detector(cfg.detector),
                        create_embedder(cfg.embedder.name, threads=cfg.embedder.threads), cfg.quality)
