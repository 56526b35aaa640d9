"""First check: a print or a phone moves as a plane, a head does not.

Plane + parallax. In every frame the homography that carries the face's four
near-coplanar landmarks (eyes, mouth corners) onto a frontal template is exact
(4 points, 8 unknowns); through it the nose lands at some template position.
For anything flat (a print, a phone, however it is moved or tilted) that
position is the same in every frame: the nose is painted on the plane. A real
nose stands about 0.4 eye distances in front of the eye-mouth plane, so when
the viewing angle changes (the head turns or nods, or moves across the
image) the nose slides on the template: *parallax*.

The detector's landmarks jitter, so the nose track is judged against its own
noise: the noise is read from frame-to-frame differences (fast jitter), the
parallax from the range of the track averaged over 5 frames (slow movement).
A head moves smoothly: a jump of the nose track (over ``max_nose_step`` eye
distances between frames, 4x a fast head turn) or of the face (over
``MAX_SHIFT``) starts a new track, so photos of two poses swapped in front of
the camera never add up to one moving head; only the newest track counts.

Verdicts (thresholds from :class:`~.config.LivenessConfig`):

* ``live``: the averaged nose track spans >= ``live_parallax`` eye distances
  and ``live_snr`` times its noise;
* ``spoof``: the face moved >= ``min_view_degrees`` (its shift across the
  image through the camera's field of view) while the track stayed within
  ``planar_parallax`` and its noise: a head moved that far shows about
  0.4 sin(angle). Spoof wins over live;
* ``unsure`` otherwise: the face has not moved enough to tell. Still faces
  (photo or person) stay here until the stage's timeout denies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .base import FaceSample, LivenessResult, Verdict
from .config import LivenessConfig

__all__ = ["PlanarMeasure", "PlanarMotionCheck", "continuous", "measure", "nose_on_template", "view_change_degrees"]

_PLANE = [0, 1, 3, 4]  # eyes and mouth corners
_NOSE = 2


def _homographies(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Exact homographies src -> dst for (P, 4, 2) point sets (batched DLT, null space by SVD)."""
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    rows_u = np.stack([-x, -y, -one, zero, zero, zero, u * x, u * y, u], axis=-1)
    rows_v = np.stack([zero, zero, zero, -x, -y, -one, v * x, v * y, v], axis=-1)
    a = np.concatenate([rows_u, rows_v], axis=-2)
    return np.linalg.svd(a)[2][..., -1, :].reshape(*src.shape[:-2], 3, 3)


def _template4() -> tuple[np.ndarray, np.ndarray]:
    from ..align import TEMPLATE_112

    t = (TEMPLATE_112 - TEMPLATE_112.mean(axis=0)) / np.linalg.norm(TEMPLATE_112[1] - TEMPLATE_112[0])
    return t[_PLANE], t[_NOSE]


def nose_on_template(landmarks: np.ndarray) -> np.ndarray:
    """Where each frame's nose lands on the frontal template through its eye-mouth plane: (P,5,2) -> (P,2).

    In eye distances. Constant over the frames of anything flat.
    """
    pts = np.asarray(landmarks, np.float64)
    plane, _ = _template4()
    h = _homographies(pts[:, _PLANE], np.broadcast_to(plane, (len(pts), 4, 2)))
    nose = np.concatenate([pts[:, _NOSE], np.ones((len(pts), 1))], axis=-1)[:, None, :] @ np.swapaxes(h, -1, -2)
    nose = nose[:, 0]
    w = nose[:, 2:3]
    w = np.where(np.abs(w) < 1e-12, 1e-12, w)
    return nose[:, :2] / w


def view_change_degrees(reference: FaceSample, samples: Sequence[FaceSample], fov_degrees: float) -> np.ndarray:
    """How far each sample's viewing angle is from the reference's, in degrees (a lower bound)."""
    width = reference.frame_width
    focal = (width / 2) / math.tan(math.radians(fov_degrees) / 2)
    c0 = reference.landmarks.mean(axis=0)
    pts = np.stack([s.landmarks for s in samples]).astype(np.float64)
    shift = np.degrees(np.arctan(np.linalg.norm(pts.mean(axis=1) - c0, axis=-1) / focal))
    return shift


SMOOTH = 5  # frames averaged for the slow nose track
MAX_SHIFT = 1.5  # eye distances the face may move across the image between frames


@dataclass(frozen=True)
class PlanarMeasure:
    """What the check read from a sample sequence (eye distances, degrees)."""

    parallax: float  # range of the averaged nose track
    noise: float  # per-axis jitter of one frame's nose position
    moved_degrees: float  # largest change of viewing angle from the first sample

    @property
    def smoothed_noise(self) -> float:
        return self.noise / math.sqrt(SMOOTH)


def continuous(samples: Sequence[FaceSample], max_step: float = 0.08) -> list[FaceSample]:
    """The newest run of samples with no jump of the nose track or of the face."""
    if len(samples) < 2:
        return list(samples)
    pts = np.stack([s.landmarks for s in samples]).astype(np.float64)
    track = nose_on_template(pts)
    step = np.linalg.norm(np.diff(track, axis=0), axis=-1)
    iod = np.linalg.norm(pts[:, 1] - pts[:, 0], axis=-1)
    shift = np.linalg.norm(np.diff(pts.mean(axis=1), axis=0), axis=-1) / np.maximum(iod[1:], 1e-9)
    jumps = np.flatnonzero((step > max_step) | (shift > MAX_SHIFT))
    return list(samples[jumps[-1] + 1:]) if len(jumps) else list(samples)


def measure(samples: Sequence[FaceSample], fov_degrees: float) -> PlanarMeasure:
    """Parallax, jitter and movement of a continuous sample run (see :func:`continuous`)."""
    pts = np.stack([s.landmarks for s in samples]).astype(np.float64)
    track = nose_on_template(pts)
    steps = np.linalg.norm(np.diff(track, axis=0), axis=-1)
    noise = float(np.median(steps)) / 1.665 if len(steps) else 0.0  # Rayleigh median -> per-axis sigma
    k = min(SMOOTH, len(track))
    kernel = np.ones(k) / k
    slow = np.stack([np.convolve(track[:, j], kernel, mode="valid") for j in range(2)], axis=-1)
    spread = slow.max(axis=0) - slow.min(axis=0)
    moved = view_change_degrees(samples[0], samples, fov_degrees)
    return PlanarMeasure(float(np.hypot(*spread)), noise, float(moved.max()))


class PlanarMotionCheck:
    """Rejects faces whose landmarks move as one plane once they have moved enough to tell."""

    type_key = "planar"
    needs_patch = False

    def __init__(self, config: LivenessConfig | None = None) -> None:
        self.config = config or LivenessConfig()

    def judge(self, samples: Sequence[FaceSample]) -> LivenessResult:
        cfg = self.config
        run = continuous(samples, cfg.max_nose_step)
        if len(run) < cfg.min_samples:
            return LivenessResult(Verdict.UNSURE, self.type_key,
                                  f"{len(run)} of {cfg.min_samples} steady frames seen")
        m = measure(run, cfg.camera_fov_degrees)
        floor = cfg.live_snr * m.smoothed_noise
        if m.moved_degrees >= cfg.min_view_degrees and m.parallax < max(cfg.planar_parallax, floor):
            expected = 0.4 * math.sin(math.radians(m.moved_degrees))
            return LivenessResult(
                Verdict.SPOOF, self.type_key,
                f"moved {m.moved_degrees:.0f} deg as a plane: nose parallax {m.parallax:.3f} eye distances "
                f"(noise {m.smoothed_noise:.3f}), a head would show about {expected:.2f}", score=m.parallax)
        if m.parallax >= max(cfg.live_parallax, floor):
            return LivenessResult(Verdict.LIVE, self.type_key,
                                  f"nose parallax {m.parallax:.3f} eye distances (noise {m.smoothed_noise:.3f})",
                                  score=m.parallax)
        return LivenessResult(
            Verdict.UNSURE, self.type_key,
            f"moved {m.moved_degrees:.0f} of {cfg.min_view_degrees:g} deg, nose parallax {m.parallax:.3f} "
            f"of {max(cfg.live_parallax, floor):.3f}", score=m.parallax)
