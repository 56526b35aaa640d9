"""Crops for a network's declared input, cut from a stored detection.

The door makes one crop per face as its embedder declares
(:class:`CropSpec`): the 5-point similarity transform onto the common
template at ``size`` px with ``face_scale`` (below 1 adds margin around the
template), or FaceNet's square margin crop of the box. Training and
evaluation cut their crops with the same function from the landmarks and
box the door's detector found, so a network never sees another view.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facegate.edge.align import similarity_transform, template
from facegate.edge.embed.base import box_crop


@dataclass(frozen=True)
class CropSpec:
    kind: str = "align5"  # "align5" | "box"
    size: int = 112
    face_scale: float = 1.0  # align5: template shrunk about the centre (< 1 = more margin)
    margin: float = 0.0  # box: fraction of the box added per side

    def to_dict(self) -> dict:
        if self.kind == "box":
            return {"kind": "box", "size": self.size, "margin": self.margin}
        return {"kind": "align5", "size": self.size, "face_scale": self.face_scale}


def template_for(spec: CropSpec) -> np.ndarray:
    t = template(spec.size)
    return (t - spec.size / 2) * spec.face_scale + spec.size / 2


def make_crop(image: np.ndarray, landmarks: np.ndarray, box: np.ndarray, spec: CropSpec) -> np.ndarray:
    if spec.kind == "box":
        return box_crop(image, tuple(float(v) for v in box), spec.margin, spec.size)
    matrix = similarity_transform(landmarks, template_for(spec))
    return cv2.warpAffine(image, matrix, (spec.size, spec.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
