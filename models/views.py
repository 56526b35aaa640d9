"""A face's crop for a network's declared input, cut from a stored detection with the door's own function.

Training and evaluation keep every face's landmarks and box in its source
image; a network with another input (size, margin) gets its crop from
:func:`facegate.edge.align.cut_crop` exactly as the door cuts it, so a
network never sees another view than it will on the device.
"""

from __future__ import annotations

import numpy as np

from facegate.edge.align import cut_crop
from facegate.edge.types import CropSpec, Detection


def make_crop(image: np.ndarray, landmarks: np.ndarray, box: np.ndarray, spec: CropSpec) -> np.ndarray:
    detection = Detection(tuple(float(v) for v in box), 1.0, np.asarray(landmarks, np.float32))
    return cut_crop(image, detection, spec)[0]


def spec_dict(spec: CropSpec) -> dict:
    """The manifest / recipe form of a crop spec (only the fields its kind uses)."""
    if spec.kind == "box":
        return {"kind": "box", "size": spec.size, "margin": spec.margin}
    return {"kind": "align5", "size": spec.size, "face_scale": spec.face_scale}
