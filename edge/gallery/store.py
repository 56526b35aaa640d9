"""The on-device face template store: one SQLite file, matched in memory.

Why SQLite: one file that survives power cuts (WAL + ``synchronous=NORMAL``),
can be read by the door daemon while the enrollment CLI writes, and needs no
server. Why in-memory matching: 1:K search is one matrix product over all
templates, so the templates of one model are loaded once into a float32 matrix
and reloaded only when the database changed (``PRAGMA data_version`` tells us
cheaply when another connection committed).

Safety rules enforced here rather than by callers:

* embeddings of different models are never compared or mixed
  (:class:`~facegate.edge.errors.GalleryModelMismatch`);
* only finite, 1-D, L2-normalised vectors are stored or matched;
* enrollment is all-or-nothing (one transaction);
* template vectors are stored sealed with AES-GCM, bound to their row
  (:mod:`.protection`, :mod:`.crypto`; the key from :mod:`.keys`), and the
  file is created private (:mod:`.files`);
* a new name that looks like an enrolled one is flagged (:mod:`.names`);
* removing a person leaves no trace of their templates in the file
  (``secure_delete`` and a WAL checkpoint);
* every SQLite failure surfaces as a :class:`~facegate.edge.errors.GalleryError`
  naming the file, never as a raw ``sqlite3`` traceback.

The schema, and how a file is opened and migrated, live in :mod:`.schema`;
the in-memory matrix matching in :mod:`.matching` and, over this file's
templates, :mod:`.lookup` (1:1 and 1:K).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError, GalleryInputError, GalleryModelMismatch, PersonNotFound
from ..types import Embedding
from . import schema
from .checks import MAX_NAME_LENGTH, NORM_TOLERANCE, check_embedding, check_name
from .files import PRIVATE
from .lookup import TemplateLookup
from .matching import Block, match_matrix
from .names import refuse_lookalike, skeleton
from .protection import TemplateProtection, checkpoint, recorded_key_id
from .records import PersonRecord, TemplateRecord
from .schema import DEFAULT_TIMEOUT_S

log = logging.getLogger(__name__)

__all__ = ["Gallery", "PersonSummary", "MAX_NAME_LENGTH", "NORM_TOLERANCE"]



def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class PersonSummary:
    """One enrolled person as listed by :meth:`Gallery.people`."""

    name: str
    templates: int
    model_ids: tuple[str, ...]
    created_at: datetime
    note: str | None = None


class Gallery(TemplateLookup):
    """Enrolled people and their face templates in one SQLite file.

    ``Gallery(":memory:")`` is a throw-away gallery for tests (its templates
    are sealed with a key that lives only in the process). With
    ``readonly=True`` the file must exist and be at the current schema; every
    write raises :class:`GalleryError`. Safe to share between threads (one lock
    serialises calls); other processes may write the same file concurrently.

    :param key_file: the template key's file (default ``gallery.key`` beside
        the gallery; a systemd credential wins over both, see :mod:`.keys`).
    :param file_mode: 0o600, or 0o640 to let the unit's group read the files.
    :param encrypt_cleartext: encrypt a clear-text gallery even though a key
        already exists (``facegate gallery encrypt``).
    """

    match_matrix = staticmethod(match_matrix)

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = DEFAULT_TIMEOUT_S,
                 key_file: str | Path | None = None, file_mode: int = PRIVATE,
                 encrypt_cleartext: bool = False) -> None:
        self._memory = str(path) == ":memory:"
        self.path: Path | str = ":memory:" if self._memory else Path(path)
        self.readonly = bool(readonly)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._blocks: dict[str, Block] = {}
        self._data_version: int | None = None
        if self._memory and self.readonly:
            raise GalleryInputError("a read-only :memory: gallery would always be empty")
        self._protect = TemplateProtection(self.path, key_file=key_file, mode=file_mode, memory=self._memory)
        conn = schema.connect(self.path, readonly=self.readonly, timeout=timeout, mode=file_mode)
        try:
            self._protect.on_open(conn, self.readonly, encrypt_cleartext)
        except sqlite3.Error as exc:
            conn.close()
            raise GalleryError(f"{self.path}: cannot check the template key: {exc}") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        """Close the database; calling it again does nothing."""
        with self._lock:
            conn, self._conn = self._conn, None
            self._blocks.clear()
            if conn is None:
                return
            try:
                if not self.readonly:
                    conn.execute("PRAGMA optimize")
            except sqlite3.Error as exc:  # never fail a close over housekeeping
                log.debug("%s: PRAGMA optimize failed: %s", self.path, exc)
            finally:
                conn.close()

    def __enter__(self) -> Gallery:
        self._db()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("read-only" if self.readonly else "open")
        return f"Gallery({str(self.path)!r}, {state})"

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GalleryError(f"{self.path}: gallery is closed")
        return self._conn

    @contextmanager
    def _sql(self, action: str) -> Iterator[sqlite3.Connection]:
        """Hold the lock and turn SQLite failures into one-line GalleryErrors."""
        with self._lock:
            conn = self._db()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise GalleryError(f"{self.path}: {action} failed: {exc}") from None

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (all-or-nothing); drops cached templates afterwards."""
        with self._sql(action) as conn:
            if self.readonly:
                raise GalleryError(f"{self.path}: gallery is open read-only; cannot {action}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    log.error("%s: rollback failed: %s", self.path, exc)
                raise
            else:
                conn.execute("COMMIT")
            finally:
                self._blocks.clear()

    # --- writes -------------------------------------------------------------------------
    def enroll(
        self,
        name: str,
        embeddings: Sequence[Embedding],
        *,
        sources: Sequence[str | None] | None = None,
        qualities: Sequence[float | None] | None = None,
        note: str | None = None,
        allow_lookalike: bool = False,
    ) -> int:
        """Add templates for ``name`` (created if new); return how many were added.

        All embeddings are checked before anything is written and the insert is
        one transaction, so a bad embedding leaves the gallery unchanged. They
        must come from the same model as every template already stored.
        ``note`` is stored on the person (replacing an earlier note) when given.
        A new name that looks like an enrolled one raises
        :class:`~facegate.edge.errors.LookalikeName` unless ``allow_lookalike``.
        """
        name = check_name(name)
        embeddings = list(embeddings)
        if not embeddings:
            raise GalleryInputError("enroll needs at least one embedding")
        n = len(embeddings)
        src = [None] * n if sources is None else list(sources)
        qual = [None] * n if qualities is None else list(qualities)
        if len(src) != n or len(qual) != n:
            raise GalleryInputError(f"got {n} embeddings but {len(src)} sources and {len(qual)} qualities")
        for i, s in enumerate(src):
            if s is not None and not isinstance(s, str):
                raise GalleryInputError(f"sources[{i}] must be a string or None, got {type(s).__name__}")
        for i, q in enumerate(qual):
            if q is not None and not math.isfinite(float(q)):
                raise GalleryInputError(f"qualities[{i}] must be finite or None, got {q!r}")
        vectors = [check_embedding(e, f"embeddings[{i}]") for i, e in enumerate(embeddings)]
        model_id = embeddings[0].model_id
        others = sorted({e.model_id for e in embeddings} - {model_id})
        if others:
            raise GalleryModelMismatch(
                f"cannot enroll embeddings of several models at once ({model_id!r} and {', '.join(map(repr, others))})"
            )
        dims = {v.shape[0] for v in vectors}
        if len(dims) != 1:
            raise GalleryInputError(f"embeddings have different dimensions {sorted(dims)}")
        with self._write("enroll") as conn:
            self._add(conn, name, model_id, vectors, src, qual, note=note, allow_lookalike=allow_lookalike)
        log.info("enrolled %d template(s) for %r (model %s)", n, name, model_id)
        return n

    def _add(self, conn: sqlite3.Connection, name: str, model_id: str, vectors: list[np.ndarray],
             src: list[str | None], qual: list[float | None], *, note: str | None = None,
             allow_lookalike: bool = False, created_at: str | None = None) -> None:
        """Insert checked templates for ``name`` inside the caller's write transaction."""
        dim = vectors[0].shape[0]
        # Checked under the write lock, so two enrollers cannot mix models.
        foreign = conn.execute(
            "SELECT model_id FROM templates WHERE model_id != ? LIMIT 1", (model_id,)
        ).fetchone()
        if foreign is not None:
            raise GalleryModelMismatch(
                f"gallery holds templates of model {foreign[0]!r} but these embeddings come from "
                f"model {model_id!r}; embeddings of different models cannot be compared. "
                f"Use the {foreign[0]!r} model, or re-enroll everyone with {model_id!r} "
                "(remove the old people first)."
            )
        row = conn.execute("SELECT dim FROM templates WHERE model_id = ? LIMIT 1", (model_id,)).fetchone()
        if row is not None and row[0] != dim:
            raise GalleryInputError(f"model {model_id!r} templates in the gallery have dim {row[0]}, got {dim}")
        now = created_at or _now()
        person = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        look = skeleton(name)
        if person is None and not allow_lookalike:
            refuse_lookalike(name, [r[0] for r in conn.execute("SELECT name FROM people WHERE skeleton = ?", (look,))])
        cipher = self._protect.cipher_for_write(conn)
        if person is None:
            person_id = conn.execute(
                "INSERT INTO people (name, created_at, note, skeleton) VALUES (?, ?, ?, ?)", (name, now, note, look)
            ).lastrowid
        else:
            person_id = person[0]
            if note is not None:
                conn.execute("UPDATE people SET note = ? WHERE id = ?", (note, person_id))
        # ids chosen here (under the write lock) because each ciphertext is bound to its row id
        first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM templates").fetchone()[0]
        rows = [
            {
                "person_id": person_id,
                "model_id": model_id,
                "quality": None if q is None else float(q),
                "source": s,
                "created_at": now,
                **self._protect.seal(cipher, v, first + i, person_id, name, model_id),
            }
            for i, (v, s, q) in enumerate(zip(vectors, src, qual))
        ]
        cols = list(rows[0])  # fixed identifiers from this module, never user input
        conn.executemany(
            f"INSERT INTO templates ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})", rows
        )

    def remove(self, name: str) -> int:
        """Delete a person and all their templates; return how many templates went."""
        name = check_name(name)
        with self._write("remove") as conn:
            person = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if person is None:
                raise PersonNotFound(f"{name!r} is not enrolled")
            count = conn.execute("SELECT count(*) FROM templates WHERE person_id = ?", (person[0],)).fetchone()[0]
            conn.execute("DELETE FROM people WHERE id = ?", (person[0],))  # templates cascade
        with self._sql("checkpoint") as conn:
            checkpoint(conn, self.path)  # secure_delete zeroed the rows; drop the WAL's old page images too
        log.info("removed %r and %d template(s)", name, count)
        return int(count)

    def import_people(self, people: Sequence[PersonRecord], *, allow_lookalike: bool = False) -> int:
        """Add everyone in ``people`` (a backup) in one transaction; returns the templates added.

        Nothing is written if any name is refused or already enrolled, or if
        the templates come from several models or from another model than the
        gallery's.
        """
        people = list(people)
        names, checked = self._checked_people(people)
        models = {t.model_id for p in people for t in p.templates}
        if len(models) > 1:
            raise GalleryModelMismatch(f"the backup mixes models {sorted(models)}")
        with self._write("import") as conn:
            taken = sorted(n for n in names if conn.execute("SELECT 1 FROM people WHERE name = ?", (n,)).fetchone())
            if taken:
                raise GalleryInputError(f"already enrolled: {', '.join(map(repr, taken))}; remove them first")
            added = self._add_people(conn, names, people, checked, allow_lookalike=allow_lookalike)
        log.info("imported %d people, %d template(s)", len(people), added)
        return added

    def replace_people(self, people: Sequence[PersonRecord], *, allow_lookalike: bool = False) -> int:
        """Make ``people`` the gallery's whole content in one transaction; returns the templates written.

        The same checks and template encryption as enrollment and import; a
        refused name or embedding leaves the gallery as it was.
        """
        people = list(people)
        names, checked = self._checked_people(people)
        with self._write("replace everyone") as conn:
            conn.execute("DELETE FROM templates")
            conn.execute("DELETE FROM people")
            return self._add_people(conn, names, people, checked, allow_lookalike=allow_lookalike)

    @staticmethod
    def _checked_people(people: list[PersonRecord]) -> tuple[list[str], list[list[np.ndarray]]]:
        """Every name and template of a backup checked before a byte is written."""
        names = [check_name(p.name) for p in people]
        if len(set(names)) != len(names):
            raise GalleryInputError("the backup names someone twice")
        checked = [[check_embedding(Embedding(t.vector, t.model_id), f"{n}: template {i}")
                    for i, t in enumerate(p.templates)] for n, p in zip(names, people)]
        return names, checked

    def _add_people(self, conn: sqlite3.Connection, names: list[str], people: list[PersonRecord],
                    checked: list[list[np.ndarray]], *, allow_lookalike: bool) -> int:
        added = 0
        for name, person, vectors in zip(names, people, checked):
            if not vectors:
                continue
            self._add(conn, name, person.templates[0].model_id, vectors,
                      [t.source for t in person.templates], [t.quality for t in person.templates],
                      note=person.note, allow_lookalike=allow_lookalike, created_at=person.created_at)
            added += len(vectors)
        return added

    def export_people(self) -> list[PersonRecord]:
        """Everyone with their decrypted templates, for an encrypted backup (:mod:`.backup`)."""
        out: list[PersonRecord] = []
        for model_id in sorted(self.model_ids()):
            block = self._block(model_id)
            with self._sql("export") as conn:
                meta = {r["id"]: r for r in conn.execute(
                    """SELECT t.id, t.quality, t.source, t.created_at AS t_created, p.name, p.note,
                              p.created_at AS p_created
                       FROM templates t JOIN people p ON p.id = t.person_id
                       WHERE t.model_id = ? ORDER BY t.person_id, t.id""", (model_id,))}
            rows = list(meta.values())
            if len(rows) != block.matrix.shape[0]:
                raise GalleryError(f"{self.path}: changed during export; try again")
            by_name: dict[str, list[TemplateRecord]] = {}
            for r, vec in zip(rows, block.matrix):
                by_name.setdefault(r["name"], []).append(TemplateRecord(
                    np.array(vec), model_id, r["quality"], r["source"], r["t_created"]))
            first = {r["name"]: r for r in reversed(rows)}
            out.extend(PersonRecord(n, first[n]["p_created"], first[n]["note"], tuple(ts)) for n, ts in by_name.items())
        return out

    @property
    def key_id(self) -> str | None:
        """The id of the key the templates are sealed with (None: nothing sealed yet)."""
        with self._sql("read key id") as conn:
            return recorded_key_id(conn)

    # --- reads ---------------------------------------------------------------------------
    def template_cipher(self):
        """The key this gallery's templates are sealed with (None while it has none): the audit seals
        the decision embeddings it keeps in the same file with it (:func:`facegate.edge.audit.hold_embedding`)."""
        with self._sql("read the template key") as conn:
            return self._protect.current(conn)

    def people(self) -> list[PersonSummary]:
        """Everyone enrolled, by name."""
        with self._sql("list people") as conn:
            rows = conn.execute(
                """SELECT p.name, p.created_at, p.note, t.model_id, count(t.id) AS n
                   FROM people p LEFT JOIN templates t ON t.person_id = p.id
                   GROUP BY p.id, t.model_id ORDER BY p.name, t.model_id"""
            ).fetchall()
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            d = out.setdefault(r["name"], {"created_at": r["created_at"], "note": r["note"], "n": 0, "models": []})
            d["n"] += r["n"]
            if r["model_id"] is not None:
                d["models"].append(r["model_id"])
        return [
            PersonSummary(
                name=name,
                templates=d["n"],
                model_ids=tuple(d["models"]),
                created_at=datetime.fromisoformat(d["created_at"]),
                note=d["note"],
            )
            for name, d in out.items()
        ]

    def model_ids(self) -> set[str]:
        """The models whose templates are stored (one, for a consistent gallery)."""
        with self._sql("list models") as conn:
            return {r[0] for r in conn.execute("SELECT DISTINCT model_id FROM templates")}

    def __len__(self) -> int:
        """Number of enrolled people."""
        with self._sql("count people") as conn:
            return int(conn.execute("SELECT count(*) FROM people").fetchone()[0])

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            name = check_name(name)
        except ValueError:
            return False
        with self._sql("look up person") as conn:
            return conn.execute("SELECT 1 FROM people WHERE name = ?", (name,)).fetchone() is not None

    def reload(self) -> None:
        """Forget cached templates; the next match reads them from the file again."""
        with self._lock:
            self._db()
            self._blocks.clear()
