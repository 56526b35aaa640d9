"""Second check: a screen's pixel grid (or a print's halftone) shows as sharp spectral peaks.

A phone held up to the camera is a regular grid of R, G, B subpixels several
times finer than the camera's pixels; the camera integrates it and the grid
aliases into moire: a periodic pattern over the face, i.e. isolated peaks in
the 2-D spectrum of the face's fine detail. Skin, hair and sensor noise have
a smooth, peak-free spectrum. Halftoned prints (office printers, magazines)
alias the same way; continuous-tone photo prints do not (the planar check is
the one for them).

Why this check: it needs no hardware and no movement, so it answers for
exactly the attack the planar check waits on (a phone held still), and it
looks at pixels, not geometry, so one spoof must beat two unrelated cues. It
works on grey (IR) frames alike: the grid is in the luminance.

Per sample the face's centre is cut at the frame's own resolution (never
resampled: that would erase the grid), aligned to the 8-pixel JPEG/MJPEG block
grid so that block edges fall on known frequencies, which are then ignored.
The score is the strongest peak over the median magnitude of the band
0.1-0.45 cycles per pixel of the high-passed, windowed patch. The verdict is
taken over the median of the last samples, so one odd frame cannot decide.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .base import FaceSample, LivenessResult, Verdict
from .config import LivenessConfig

__all__ = ["ScreenGridCheck", "face_patch", "grid_score"]

PATCH_MIN, PATCH_MAX = 32, 128
_BAND = (0.10, 0.45)  # cycles per pixel


def face_patch(grey: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The face's central square, on the 8-pixel block grid; None when the face is too small."""
    x1, y1, x2, y2 = box
    side = int(min(x2 - x1, y2 - y1) * 0.6) // 8 * 8
    side = min(side, PATCH_MAX)
    if side < PATCH_MIN:
        return None
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x0 = round((cx - side / 2) / 8) * 8
    y0 = round((cy - side / 2) / 8) * 8
    h, w = grey.shape[:2]
    x0 = min(max(x0, 0), (w - side) // 8 * 8)
    y0 = min(max(y0, 0), (h - side) // 8 * 8)
    if x0 < 0 or y0 < 0:
        return None
    return np.ascontiguousarray(grey[y0:y0 + side, x0:x0 + side]), (x0, y0)


def _band_mask(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The bins judged (band, off the JPEG block frequencies) and each bin's ring (integer radius)."""
    f = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius = np.hypot(fx, fy)
    band = (radius >= _BAND[0]) & (radius <= _BAND[1])
    # JPEG / MJPEG block edges: multiples of 1/8 cycle per pixel on either axis
    block = np.zeros(n, bool)
    for k in range(-4, 5):
        block[round(k * n / 8) % n] = True
    near = block | np.roll(block, 1) | np.roll(block, -1)
    band &= ~near[:, None] & ~near[None, :]
    return band, np.round(radius * n).astype(np.int32)


_MASKS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def grid_score(patch: np.ndarray) -> float:
    """Strongest spectral peak over its ring's median: about 3-5 for a face, far more for a grid.

    Each frequency ring is normalised by its own median, so a natural
    image's falling spectrum does not count as a peak; a grid's aliases do.
    """
    n = patch.shape[0]
    if n not in _MASKS:
        _MASKS[n] = _band_mask(n)
    band, ring = _MASKS[n]
    p = patch.astype(np.float32)
    high = p - cv2.GaussianBlur(p, (0, 0), 2.0)  # the face's shape out, fine detail in
    window = np.hanning(n).astype(np.float32)
    spectrum = np.abs(np.fft.fft2(high * window[:, None] * window[None, :]))
    rings = ring[band]
    values = spectrum[band]
    medians = np.zeros(rings.max() + 1)
    for r in np.unique(rings):
        medians[r] = np.median(values[rings == r])
    norm = values / np.maximum(medians[rings], 1e-9)
    return float(norm.max())


class ScreenGridCheck:
    """Rejects faces shown on a pixel grid (phone, tablet, monitor) or a halftone print."""

    type_key = "screen"
    needs_patch = True

    def __init__(self, config: LivenessConfig | None = None) -> None:
        self.config = config or LivenessConfig()
        self._scores: dict[tuple[float, int], float] = {}  # each patch is scored once

    def _score(self, sample: FaceSample) -> float:
        key = (sample.t, id(sample.patch))
        if key not in self._scores:
            if len(self._scores) > 256:
                self._scores.clear()
            self._scores[key] = grid_score(sample.patch)
        return self._scores[key]

    def judge(self, samples: Sequence[FaceSample]) -> LivenessResult:
        cfg = self.config
        recent = [s for s in samples if s.patch is not None][-max(cfg.screen_samples, 5):]
        scores = [self._score(s) for s in recent]
        if len(scores) < cfg.screen_samples:
            return LivenessResult(Verdict.UNSURE, self.type_key,
                                  f"{len(scores)} of {cfg.screen_samples} face patches seen")
        score = float(np.median(scores))
        if score >= cfg.screen_peak_ratio:
            return LivenessResult(Verdict.SPOOF, self.type_key,
                                  f"pixel grid: spectral peak {score:.1f}x the median (limit {cfg.screen_peak_ratio:g})",
                                  score=score)
        return LivenessResult(Verdict.LIVE, self.type_key, f"no pixel grid (peak {score:.1f}x)", score=score)
