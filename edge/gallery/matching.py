"""Matching in memory: all templates of one model in a float32 matrix.

1:K search is one matrix product over all templates, so the templates of one
model are loaded once into a read-only matrix (rows grouped by person) and
each person's distance is the minimum over their rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import GalleryError, GalleryInputError


def match_matrix(query: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """Euclidean distances (m, n) between L2-normalised rows of query (m, d) and templates (n, d).

    Computed as ``sqrt(max(0, 2 - 2 * q @ t.T))``: one BLAS product, no (m, n, d)
    temporary, so 100,000 templates stay fast. A 1-D query is treated as (1, d).
    Works in the templates' float dtype (float32 normally) to avoid copying them.
    """
    t = np.asarray(templates)
    if not np.issubdtype(t.dtype, np.floating):
        t = t.astype(np.float32)
    q = np.atleast_2d(np.asarray(query, dtype=t.dtype))
    if q.ndim != 2 or t.ndim != 2:
        raise GalleryInputError(f"expected 2-D arrays, got query {q.shape} and templates {t.shape}")
    if q.shape[1] != t.shape[1] and t.shape[0] > 0:
        raise GalleryInputError(f"dimension mismatch: query has {q.shape[1]}, templates have {t.shape[1]}")
    if t.shape[0] == 0:
        return np.empty((q.shape[0], 0), dtype=t.dtype)
    d = q @ t.T
    d *= -2.0
    d += 2.0
    np.maximum(d, 0.0, out=d)
    np.sqrt(d, out=d)
    return d


@dataclass(frozen=True)
class Block:
    """All templates of one model, rows grouped by person for ``reduceat``."""

    row_names: list[str]  # person name of each row
    matrix: np.ndarray  # (n, dim) float32, read-only
    person_names: list[str]  # one per group, in row order
    starts: np.ndarray  # (k,) first row of each person's group

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


def build_block(path: object, model_id: str, rows: list[tuple], decode: Callable[[tuple], np.ndarray]) -> Block:
    """The matrix of one model's template rows ``(id, person_id, name, ...)``; ``decode``
    turns a row into its vector (and raises a GalleryError if it was tampered with)."""
    if not rows:
        empty = np.empty((0, 0), dtype=np.float32)
        empty.flags.writeable = False
        return Block([], empty, [], np.empty(0, dtype=np.intp))
    matrix: np.ndarray | None = None
    person_ids = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        try:
            vec = decode(row)
            if matrix is None:
                matrix = np.empty((len(rows), vec.shape[0]), dtype=np.float32)
            elif vec.shape[0] != matrix.shape[1]:
                raise ValueError(f"dim {vec.shape[0]} differs from the model's dim {matrix.shape[1]}")
        except GalleryError:
            raise  # already names the file and the row (tampering)
        except ValueError as exc:
            raise GalleryError(f"{path}: template {row[0]} of model {model_id!r}: {exc}") from None
        matrix[i] = vec
        person_ids[i] = row[1]
    assert matrix is not None
    matrix.flags.writeable = False
    starts = np.flatnonzero(np.r_[True, person_ids[1:] != person_ids[:-1]])
    row_names = [row[2] for row in rows]
    return Block(row_names, matrix, [row_names[s] for s in starts], starts)
