"""The gallery's side of template encryption: which key, checked when, and migration.

The gallery file records the ``key_id`` of the key its templates are sealed
with (table ``gallery_meta``) and every template row carries the ``key_id`` it
was sealed with (NULL: a clear-text row written by facegate before templates
were encrypted). Rules:

* a file that records a key needs that key: missing or another key is one
  :class:`GalleryKeyError` when the gallery is opened, before anything is
  read or written;
* in a file that records a key, a clear-text or foreign row is tampering
  (someone inserted a template without the key), never matched;
* a clear-text gallery is encrypted in place, in one transaction, when it is
  opened read-write with no key yet (one is created beside it) or with the
  key beside it. When the key is kept apart (a systemd credential or a
  configured key file), the migration is left to an explicit ``facegate
  gallery encrypt``: otherwise anyone able to replace the gallery file with a
  clear-text one of their own choosing would have it silently adopted (with
  the key beside the gallery, whoever can replace one can replace both, so
  refusing would protect nothing);
* a read-only open of a clear-text gallery reads it, with a warning.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np

from ..errors import GalleryKeyError, GalleryTampered
from .crypto import TemplateCipher, template_aad
from .files import PRIVATE
from .keys import CREDENTIAL_NAME, GalleryKey, create_key, credential_path, default_key_path, find_key
from .schema import decode_embedding

log = logging.getLogger(__name__)

__all__ = ["TemplateProtection"]

_META_KEY = "template_key_id"


def recorded_key_id(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM gallery_meta WHERE key = ?", (_META_KEY,)).fetchone()
    return None if row is None else str(row[0])


def cleartext_rows(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM templates WHERE key_id IS NULL").fetchone()[0])


class TemplateProtection:
    """Holds the gallery's key (once there is one) and seals/opens its templates."""

    def __init__(self, path: Path | str, *, key_file: str | Path | None = None, mode: int = PRIVATE,
                 memory: bool = False) -> None:
        self.path = path
        self.memory = memory
        self.mode = mode
        self.key_path = None if memory else (Path(key_file) if key_file is not None else default_key_path(path))
        self._key_file = key_file
        self._cipher: TemplateCipher | None = None
        if memory:
            self._cipher = TemplateCipher(GalleryKey.ephemeral())

    # --- keys ---------------------------------------------------------------------
    def _where_looked(self) -> str:
        return f"the systemd credential {CREDENTIAL_NAME} and the key file {self.key_path}"

    def _find(self) -> TemplateCipher | None:
        if self._cipher is None and not self.memory:
            key = find_key(self.path, self._key_file)
            if key is not None:
                self._cipher = TemplateCipher(key)
                log.debug("%s: template key %s from %s", self.path, key.key_id, key.origin)
        return self._cipher

    def _check(self, recorded: str) -> TemplateCipher:
        cipher = self._find()
        if cipher is None:
            raise GalleryKeyError(
                f"{self.path}: templates are encrypted with key {recorded} and no key was found "
                f"(looked in {self._where_looked()}); restore the key, or import a backup")
        if cipher.key_id != recorded:
            raise GalleryKeyError(
                f"{self.path}: templates are encrypted with key {recorded}, but the key found has id "
                f"{cipher.key_id}: wrong key; nothing was read or written")
        return cipher

    def on_open(self, conn: sqlite3.Connection, readonly: bool, encrypt_cleartext: bool = False) -> None:
        """Check the key against the file and migrate a clear-text gallery if allowed."""
        recorded = recorded_key_id(conn)
        clear = cleartext_rows(conn)
        if recorded is not None:
            self._check(recorded)
            if clear:
                raise GalleryTampered(f"{self.path}: {clear} template(s) are not encrypted in an encrypted "
                                      "gallery: someone wrote them without the key; they are never matched")
            return
        if not clear:
            self._find()  # may still be None: created at the first enrollment
            return
        if readonly:
            log.warning("%s: %d clear-text template(s); open the gallery read-write once to encrypt them",
                        self.path, clear)
            return
        existing = self._find()
        kept_apart = self._key_file is not None or credential_path() is not None
        if existing is not None and kept_apart and not encrypt_cleartext:
            raise GalleryKeyError(
                f"{self.path}: holds {clear} clear-text template(s) and the key is kept apart "
                f"({existing.key_id}); check the file is yours, then encrypt it with: facegate gallery encrypt")
        self.encrypt_cleartext(conn)

    def current(self, conn: sqlite3.Connection) -> TemplateCipher | None:
        """The key the file's templates are sealed with (checked), None while it records none."""
        recorded = recorded_key_id(conn)
        return None if recorded is None else self._check(recorded)

    def cipher_for_write(self, conn: sqlite3.Connection) -> TemplateCipher:
        """Under the write lock: the key to seal new templates with (created at first need)."""
        cipher = self.current(conn)
        if cipher is not None:
            return cipher
        cipher = self._find()
        if cipher is None:
            assert self.key_path is not None
            cipher = self._cipher = TemplateCipher(create_key(self.key_path, self.mode))
        conn.execute("INSERT OR REPLACE INTO gallery_meta (key, value) VALUES (?, ?)", (_META_KEY, cipher.key_id))
        return cipher

    # --- rows -------------------------------------------------------------------------
    def encrypt_cleartext(self, conn: sqlite3.Connection) -> int:
        """Seal every clear-text template in place, in one transaction; returns how many."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                """SELECT t.id, t.person_id, p.name, t.model_id, t.dim, t.embedding
                   FROM templates t JOIN people p ON p.id = t.person_id WHERE t.key_id IS NULL"""
            ).fetchall()
            cipher = self.cipher_for_write(conn)
            for tid, pid, name, model_id, dim, blob in rows:
                try:
                    vec = decode_embedding(dim, blob)
                except ValueError as exc:
                    raise GalleryTampered(f"{self.path}: template {tid}: {exc}") from None
                sealed = cipher.seal(vec, template_aad(tid, pid, name, model_id, dim))
                conn.execute("UPDATE templates SET embedding = ?, key_id = ? WHERE id = ?",
                             (sealed, cipher.key_id, tid))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if rows:
            log.warning("%s: encrypted %d clear-text template(s) in place with key %s",
                        self.path, len(rows), cipher.key_id)
            checkpoint(conn, self.path)
        return len(rows)

    def seal(self, cipher: TemplateCipher, vector: np.ndarray, template_id: int, person_id: int, name: str,
             model_id: str) -> dict:
        """Column values of one new template row."""
        v = np.ascontiguousarray(vector, dtype="<f4")
        aad = template_aad(template_id, person_id, name, model_id, v.shape[0])
        return {"id": template_id, "dim": int(v.shape[0]), "embedding": cipher.seal(v, aad),
                "key_id": cipher.key_id}

    def decoder(self, conn: sqlite3.Connection, model_id: str):
        """A function from a row ``(id, person_id, name, dim, embedding, key_id)`` to its vector."""
        cipher = self.current(conn)

        def decode(row: tuple) -> np.ndarray:
            tid, pid, name, dim, blob, row_key = row
            where = f"{self.path}: template {tid} of {name!r}"
            if cipher is None:
                if row_key is not None:
                    raise GalleryTampered(f"{where}: sealed with key {row_key} but the gallery records no key")
                return decode_embedding(dim, blob)
            if row_key != cipher.key_id:
                raise GalleryTampered(f"{where}: not sealed with the gallery's key ({row_key or 'clear text'})")
            if not isinstance(dim, int) or dim <= 0:
                raise GalleryTampered(f"{where}: bad dimension {dim!r}")
            return cipher.open(blob, template_aad(tid, pid, name, model_id, dim), dim, where)

        return decode


def checkpoint(conn: sqlite3.Connection, path: object) -> None:
    """Fold the WAL into the file and truncate it, so old page images (clear-text
    templates, removed people) do not linger in ``-wal``; best effort."""
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.info("%s: WAL checkpoint incomplete (a reader holds it); it completes later", path)
    except sqlite3.Error as exc:
        log.debug("%s: checkpoint failed: %s", path, exc)
