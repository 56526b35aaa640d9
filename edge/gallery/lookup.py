"""1:1 and 1:K over the gallery's templates, cached in memory per model.

The :class:`~facegate.edge.gallery.store.Gallery` half that reads: the
templates of one model are opened (decrypted) once into a read-only matrix
and reloaded only when some connection wrote (``PRAGMA data_version``), then
each question is one matrix product.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

from ..errors import GalleryInputError, GalleryModelMismatch, PersonNotFound
from ..types import Embedding, Match
from .checks import check_embedding, check_name, check_threshold
from .matching import Block, build_block, match_matrix
from .protection import TemplateProtection

log = logging.getLogger(__name__)

__all__ = ["TemplateLookup"]


class TemplateLookup:
    """Matching methods of :class:`Gallery`; it provides the connection and the cache."""

    path: Path | str
    _lock: threading.RLock
    _blocks: dict[str, Block]
    _data_version: int | None
    _protect: TemplateProtection
    _sql: Callable[[str], AbstractContextManager[sqlite3.Connection]]
    model_ids: Callable[[], set[str]]

    def templates(self, model_id: str) -> tuple[list[str], np.ndarray]:
        """Person name per row and the (n, dim) float32 matrix of one model's templates.

        The matrix is the cached, read-only array used for matching; rows of one
        person are adjacent. An unknown model gives ``([], empty (0, 0))``.
        """
        block = self._block(model_id)
        return list(block.row_names), block.matrix

    def _block(self, model_id: str) -> Block:
        """The cached templates of ``model_id``, reloaded if any connection wrote."""
        with self._sql("load templates") as conn:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                log.debug("%s: changed by another connection, dropping cached templates", self.path)
                self._blocks.clear()
                self._data_version = version
            block = self._blocks.get(model_id)
            if block is None:
                cur = conn.cursor()
                cur.row_factory = None  # plain tuples: this query may return 100,000 rows
                rows = cur.execute(
                    """SELECT t.id, t.person_id, p.name, t.dim, t.embedding, t.key_id
                       FROM templates t JOIN people p ON p.id = t.person_id
                       WHERE t.model_id = ? ORDER BY t.person_id, t.id""",
                    (model_id,),
                ).fetchall()
                decode = self._protect.decoder(conn, model_id)
                block = self._blocks[model_id] = build_block(self.path, model_id, rows, decode)
        return block

    def _block_for(self, embedding: Embedding) -> tuple[np.ndarray, Block | None]:
        """Checked query vector and the templates it may be compared with (None: empty gallery)."""
        vec = check_embedding(embedding, "query embedding")
        block = self._block(embedding.model_id)
        if block.matrix.shape[0] == 0:
            stored = self.model_ids()
            if not stored:
                return vec, None
            raise GalleryModelMismatch(
                f"query embedding comes from model {embedding.model_id!r} but the gallery was enrolled with "
                f"{', '.join(map(repr, sorted(stored)))}; use that model, or re-enroll everyone with "
                f"{embedding.model_id!r}"
            )
        if vec.shape[0] != block.dim:
            raise GalleryInputError(f"query embedding has dim {vec.shape[0]}, gallery templates have dim {block.dim}")
        return vec, block

    # --- matching -----------------------------------------------------------------------
    def identify(self, embedding: Embedding, threshold: float) -> Match:
        """1:K: the nearest enrolled person, accepted if within ``threshold``.

        A person's distance is the minimum over their templates. ``best_name``
        is always the nearest person; ``name`` only when accepted. An empty
        gallery gives ``name=None, distance=inf, candidates=0`` (nobody to
        match is a rejection, not an error).
        """
        threshold = check_threshold(threshold)
        vec, block = self._block_for(embedding)
        if block is None:
            return Match(name=None, distance=math.inf, threshold=threshold, model_id=embedding.model_id)
        per_person = np.minimum.reduceat(match_matrix(vec, block.matrix)[0], block.starts)
        k = per_person.shape[0]
        if k >= 2:
            top2 = np.argpartition(per_person, 1)[:2]
            best, second = sorted(top2.tolist(), key=lambda j: (per_person[j], j))
            runner_up, runner_up_distance = block.person_names[second], float(per_person[second])
        else:
            best, runner_up, runner_up_distance = 0, None, None
        distance = float(per_person[best])
        best_name = block.person_names[best]
        return Match(
            name=best_name if distance <= threshold else None,
            distance=distance,
            threshold=threshold,
            model_id=embedding.model_id,
            best_name=best_name,
            runner_up=runner_up,
            runner_up_distance=runner_up_distance,
            candidates=k,
        )

    def verify(self, name: str, embedding: Embedding, threshold: float) -> Match:
        """1:1: is ``embedding`` the enrolled ``name``? Compared with that person's templates only."""
        name = check_name(name)
        threshold = check_threshold(threshold)
        if name not in self:
            raise PersonNotFound(f"{name!r} is not enrolled")
        vec, block = self._block_for(embedding)
        try:
            i = block.person_names.index(name) if block is not None else -1
        except ValueError:
            i = -1
        if block is None or i < 0:
            raise GalleryModelMismatch(f"{name!r} has no templates of model {embedding.model_id!r}; re-enroll them")
        stop = block.starts[i + 1] if i + 1 < len(block.starts) else block.matrix.shape[0]
        distance = float(match_matrix(vec, block.matrix[block.starts[i] : stop]).min())
        return Match(
            name=name if distance <= threshold else None,
            distance=distance,
            threshold=threshold,
            model_id=embedding.model_id,
            best_name=name,
            candidates=1,
        )
