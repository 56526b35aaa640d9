"""Alignment: a 5-point similarity transform to the common 112x112 template,
and a quality record per crop.

Every detector's landmarks are mapped onto the same template (eyes, nose tip,
mouth corners, as used by ArcFace-style models), so crops from any detector
look alike and training sees exactly what the device sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .settings import check_fields, fail, setting
from .types import ALIGN_112, CropSpec, Detection, FaceCrop, Quality

CROP_SIZE = 112
#: The smallest face the door works with, in frame pixels: the detector's
#: default search size and the quality gate's default minimum alike.
MIN_FACE_PX = 60

#: Landmark positions in a 112x112 crop, in LANDMARK_NAMES order.
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

_EYE_MID = TEMPLATE_112[:2].mean(axis=0)
_MOUTH_MID = TEMPLATE_112[3:].mean(axis=0)
#: Where the nose sits between eye line (0) and mouth line (1) on a level face.
_NOSE_DEPTH = float((TEMPLATE_112[2, 1] - _EYE_MID[1]) / (_MOUTH_MID[1] - _EYE_MID[1]))


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping src to dst.

    Umeyama's closed form; returns the 2x3 matrix for ``cv2.warpAffine``. A
    closed form rather than RANSAC: five points, no outliers to vote out, and
    the result must not depend on a random seed.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c**2).sum() / len(src)
    cov = d_c.T @ s_c / len(src)
    u, sing, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sing) @ sign) / var_s) if var_s > 0 else 1.0
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]])


def template(size: int = CROP_SIZE, face_scale: float = 1.0) -> np.ndarray:
    """The 5-point template for a square crop of ``size`` pixels.

    ``face_scale`` shrinks it about the crop centre (below 1: more margin).
    """
    centre = size / 2.0
    return centre + (TEMPLATE_112 * (size / CROP_SIZE) - centre) * face_scale


def warp_face(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE, face_scale: float = 1.0) -> np.ndarray:
    """Cut the aligned ``size`` x ``size`` crop for one face out of a BGR frame."""
    matrix = similarity_transform(landmarks, template(size, face_scale))
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def box_crop(image: np.ndarray, box: Sequence[float], margin: float, size: int) -> np.ndarray:
    """Crop ``box`` grown by ``margin`` (fraction of its size) per side, resized to ``size``.

    The grown box is clipped to the frame, as FaceNet's own preprocessing
    does, so its published accuracy carries over.
    """
    return _box_crop(image, box, margin, size)[0]


def _grown_box(image: np.ndarray, box: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """``box`` grown by ``margin`` of its size per side, in whole pixels, clipped to the frame."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left = int(np.clip(np.floor(x1 - margin * w), 0, width - 1))
    top = int(np.clip(np.floor(y1 - margin * h), 0, height - 1))
    right = int(np.clip(np.ceil(x2 + margin * w), left + 1, width))
    bottom = int(np.clip(np.ceil(y2 + margin * h), top + 1, height))
    return left, top, right, bottom


def _box_crop(image: np.ndarray, box: Sequence[float], margin: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    left, top, right, bottom = _grown_box(image, box, margin)
    patch = image[top:bottom, left:right]
    shrink = patch.shape[0] > size or patch.shape[1] > size
    crop = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    sx, sy = size / (right - left), size / (bottom - top)
    return crop, np.array([[sx, 0.0, -left * sx], [0.0, sy, -top * sy]])


def _region_crop(image: np.ndarray, box: Sequence[float], margin: float,
                 size: int) -> tuple[np.ndarray, np.ndarray]:
    """The grown box at the frame's scale (shrunk to fit ``size`` if larger), top-left aligned, black beyond."""
    left, top, right, bottom = _grown_box(image, box, margin)
    scale = min(1.0, size / max(right - left, bottom - top))
    matrix = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])
    if scale == 1.0:  # the frame's own pixels: no resampling
        crop = np.zeros((size, size, image.shape[2]), image.dtype)
        crop[:bottom - top, :right - left] = image[top:bottom, left:right]
        return crop, matrix
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
    return crop, matrix


def cut_crop(image: np.ndarray, detection: Detection, spec: CropSpec = ALIGN_112) -> tuple[np.ndarray, np.ndarray]:
    """The crop ``spec`` asks for, and the 2x3 matrix mapping frame to crop pixels."""
    if spec.kind == "box":
        return _box_crop(image, detection.box, spec.margin, spec.size)
    if spec.kind == "region":
        return _region_crop(image, detection.box, spec.margin, spec.size)
    matrix = similarity_transform(detection.landmarks, template(spec.size, spec.face_scale))
    crop = cv2.warpAffine(image, matrix, (spec.size, spec.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, matrix


@dataclass(frozen=True)
class QualityThresholds:
    """Limits a face must meet to be enrolled or judged by the door (the ``[quality]`` table).

    Provisional defaults, chosen to reject the clearly unusable (faces far from
    the camera, motion blur, darkness, heads turned away) while passing LFW-like
    photos: they pass 87% of LFW-half faces on yaw and 96% on pitch (LFW is in
    the wild; a door camera faces people). Field calibration refines them.
    """

    min_face_px: float = setting(float(MIN_FACE_PX), ge=0, le=4096)
    #: Variance of the Laplacian on the central part of the aligned grey crop (at 112 px).
    min_sharpness: float = setting(20.0, ge=0)
    min_brightness: float = setting(40.0, ge=0, le=255)
    max_brightness: float = setting(220.0, ge=0, le=256)  # 256: never too bright
    max_yaw: float = setting(0.45, gt=0)
    max_pitch: float = setting(0.45, gt=0)

    def __post_init__(self) -> None:
        check_fields(self, "quality")
        if self.min_brightness >= self.max_brightness:
            fail("quality.min_brightness", self.min_brightness,
                 f"less than quality.max_brightness ({self.max_brightness:g})")

    def reasons(self, q: Quality) -> tuple[str, ...]:
        out = []
        if q.face_px < self.min_face_px:
            out.append(f"face too small ({q.face_px:.0f} px < {self.min_face_px:.0f})")
        if q.sharpness < self.min_sharpness:
            out.append(f"blurred (sharpness {q.sharpness:.0f} < {self.min_sharpness:.0f})")
        if q.brightness < self.min_brightness:
            out.append(f"too dark (brightness {q.brightness:.0f} < {self.min_brightness:.0f})")
        if q.brightness > self.max_brightness:
            out.append(f"too bright (brightness {q.brightness:.0f} > {self.max_brightness:.0f})")
        if abs(q.yaw) > self.max_yaw:
            out.append(f"head turned (yaw {q.yaw:+.2f}, limit {self.max_yaw:.2f})")
        if abs(q.pitch) > self.max_pitch:
            out.append(f"head tilted (pitch {q.pitch:+.2f}, limit {self.max_pitch:.2f})")
        return tuple(out)


#: Accept every face: for evaluation, where the protocol judges all pairs.
NO_QUALITY_GATE = QualityThresholds(0.0, 0.0, 0.0, 256.0, 1e9, 1e9)


def pose_from_landmarks(landmarks: np.ndarray) -> tuple[float, float]:
    """Frontal-pose estimate (yaw, pitch), both about 0 for a frontal face.

    Landmarks are first rotated level; yaw is the nose's offset from the eyes'
    midpoint in half inter-ocular distances (about +-1 with the nose over an
    eye); pitch is how far the nose's depth between eye line and mouth line
    departs from the template's, relative to that depth.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    le, re, nose = pts[0], pts[1], pts[2]
    mouth = pts[3:].mean(axis=0)
    eye_vec = re - le
    eye_dist = float(np.hypot(*eye_vec))
    if eye_dist < 1e-6:
        return 1.0, 1.0
    cos, sin = eye_vec / eye_dist
    rot = np.array([[cos, sin], [-sin, cos]])  # rotates the eye line to horizontal
    eye_mid = (le + re) / 2
    n = rot @ (nose - eye_mid)
    m = rot @ (mouth - eye_mid)
    yaw = float(n[0] / (eye_dist / 2))
    depth = float(n[1] / m[1]) if abs(m[1]) > 1e-6 else 0.0
    pitch = (depth - _NOSE_DEPTH) / _NOSE_DEPTH
    return yaw, float(pitch)


def measure_quality(crop: np.ndarray, detection: Detection, thresholds: QualityThresholds | None = None) -> Quality:
    """Size, sharpness, brightness and pose of one face crop.

    Measured at 112 px: a crop of another size is resized first, so the
    sharpness threshold (a Laplacian variance, which depends on scale) keeps
    its meaning whatever crop the embedder asks for.
    """
    if crop.shape[0] != CROP_SIZE:
        shrink = crop.shape[0] > CROP_SIZE
        crop = cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    c = grey.shape[0] // 4
    centre = grey[c:-c, c:-c]
    sharpness = float(cv2.Laplacian(centre, cv2.CV_64F).var())
    brightness = float(centre.mean())
    yaw, pitch = pose_from_landmarks(detection.landmarks)
    q = Quality(face_px=detection.size, sharpness=sharpness, brightness=brightness, yaw=yaw, pitch=pitch)
    if thresholds is None:
        return q
    return Quality(q.face_px, q.sharpness, q.brightness, q.yaw, q.pitch, thresholds.reasons(q))


def align(image: np.ndarray, detection: Detection, thresholds: QualityThresholds | None = None,
          spec: CropSpec = ALIGN_112) -> FaceCrop:
    """The one crop of a detected face its embedder needs (``spec``), with its quality record."""
    crop, matrix = cut_crop(image, detection, spec)
    return FaceCrop(image=crop, detection=detection, quality=measure_quality(crop, detection, thresholds),
                    spec=spec, matrix=matrix)
