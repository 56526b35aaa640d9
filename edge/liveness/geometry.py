"""How well one plane explains a face's 5 landmarks moving between two frames.

Batch least-squares fits (numpy only, no RANSAC: five points, no outliers to
vote out, and a result that never depends on a seed) between pairs of landmark
sets, as residuals in units of the eye distance:

* **similarity** (shift, in-plane rotation, zoom: 4 parameters): what is left
  is the face's *non-rigid-in-the-image* change, i.e. how far it turned or
  tilted. Below a few percent, a plane and a head cannot be told apart.
* **homography** (8 parameters): exactly how any plane (a print, a phone)
  moves under a pinhole camera. A real head's nose stands ~0.4 eye distances
  in front of the eye-mouth plane, so when the head turns the nose slides
  against that plane (parallax) and the homography leaves a residual.
"""

from __future__ import annotations

import numpy as np

__all__ = ["eye_distance", "homography_residual", "similarity_residual"]


def eye_distance(points: np.ndarray) -> np.ndarray:
    """Distance between the two eye landmarks, for (..., 5, 2) arrays."""
    return np.linalg.norm(points[..., 1, :] - points[..., 0, :], axis=-1)


def _normalise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hartley normalisation per set: centroid to 0, mean distance sqrt(2)."""
    centre = points.mean(axis=-2, keepdims=True)
    shifted = points - centre
    scale = np.sqrt(2.0) / np.maximum(np.linalg.norm(shifted, axis=-1).mean(axis=-1), 1e-9)
    return shifted * scale[..., None, None], centre, scale


def _rms(err: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """RMS point error over the 5 points, over the pair's mean eye distance."""
    iod = np.maximum((eye_distance(src) + eye_distance(dst)) / 2, 1e-9)
    return np.sqrt((err**2).sum(axis=-1).mean(axis=-1)) / iod


def similarity_residual(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """RMS error of the best similarity src -> dst, in eye distances; (P, 5, 2) -> (P,)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    s, _, _ = _normalise(src)
    d, dc, dscale = _normalise(dst)
    x, y = s[..., 0], s[..., 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    # x' = a x - b y + tx ; y' = b x + a y + ty
    rows_x = np.stack([x, -y, one, zero], axis=-1)
    rows_y = np.stack([y, x, zero, one], axis=-1)
    a = np.concatenate([rows_x, rows_y], axis=-2)  # (P, 10, 4)
    b = np.concatenate([d[..., 0], d[..., 1]], axis=-1)[..., None]  # (P, 10, 1)
    at = np.swapaxes(a, -1, -2)
    p = np.linalg.solve(at @ a, at @ b)
    fit = (a @ p)[..., 0]
    err = (fit - b[..., 0]).reshape(*fit.shape[:-1], 2, 5)
    err = np.swapaxes(err, -1, -2) / dscale[..., None, None]  # back to dst pixels
    return _rms(err, src, dst)


def homography_residual(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """RMS reprojection error of the best homography src -> dst, in eye distances.

    Normalised DLT (the linear least-squares fit ``cv2.findHomography`` starts
    from), batched over pairs: (P, 5, 2) -> (P,).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    s, _, _ = _normalise(src)
    d, _, dscale = _normalise(dst)
    x, y = s[..., 0], s[..., 1]
    u, v = d[..., 0], d[..., 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    rows_u = np.stack([-x, -y, -one, zero, zero, zero, u * x, u * y, u], axis=-1)
    rows_v = np.stack([zero, zero, zero, -x, -y, -one, v * x, v * y, v], axis=-1)
    a = np.concatenate([rows_u, rows_v], axis=-2)  # (P, 10, 9)
    h = np.linalg.svd(a)[2][..., -1, :].reshape(*a.shape[:-2], 3, 3)
    homog = np.concatenate([s, np.ones_like(x)[..., None]], axis=-1) @ np.swapaxes(h, -1, -2)
    w = homog[..., 2:3]
    w = np.where(np.abs(w) < 1e-12, 1e-12, w)
    err = (homog[..., :2] / w - d) / dscale[..., None, None]
    return _rms(err, src, dst)
