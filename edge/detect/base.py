"""The face-detector protocol: an image in, faces with 5 landmarks out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..types import Detection


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in a BGR uint8 image.

    Returns detections in frame coordinates, largest face first, keeping
    only faces at least ``min_face_size`` pixels tall.
    """

    type_key: str
    min_face_size: int

    def detect(self, image: np.ndarray, lores: np.ndarray | None = None) -> list[Detection]:
        """Faces in ``image`` in its pixels; ``lores``, a smaller copy of it, may be searched instead."""
        ...
