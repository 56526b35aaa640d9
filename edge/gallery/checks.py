"""What the gallery accepts: names, template vectors, thresholds.

Checked before anything is written, so a bad call leaves the file as it was;
each refusal is a :class:`~facegate.edge.errors.GalleryError` that is also a
``ValueError``.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GalleryInputError
from ..types import Embedding
from .names import MAX_NAME_LENGTH, check_name  # noqa: F401  (re-exported)

#: Accepted deviation of an embedding's L2 norm from 1.
NORM_TOLERANCE = 1e-3


def check_embedding(emb: Embedding, what: str = "embedding") -> np.ndarray:
    """The embedding's vector as float32 after checking shape, values and norm.

    Non-normalised vectors are refused rather than normalised: they mean the
    embedder or the caller is wrong, and distances would silently change.
    """
    model_id = getattr(emb, "model_id", None)
    if not isinstance(model_id, str) or not model_id:
        raise GalleryInputError(f"{what}: model_id must be a non-empty string, got {model_id!r}")
    v = np.asarray(getattr(emb, "vector", None))
    if v.ndim != 1 or v.size == 0:
        raise GalleryInputError(f"{what}: expected a non-empty 1-D vector, got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.floating):
        raise GalleryInputError(f"{what}: expected a float vector, got dtype {v.dtype}")
    v64 = v.astype(np.float64)
    if not np.isfinite(v64).all():
        raise GalleryInputError(f"{what}: vector contains NaN or infinite values")
    norm = float(np.linalg.norm(v64))
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise GalleryInputError(
            f"{what}: vector is not L2-normalised (norm {norm:.6f}, expected 1 +- {NORM_TOLERANCE}); "
            "normalise it in the embedder"
        )
    return v.astype(np.float32)


def check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not math.isfinite(t) or t < 0:
        raise GalleryInputError(f"threshold must be a finite distance >= 0, got {threshold!r}")
    return t
