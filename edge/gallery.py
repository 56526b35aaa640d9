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
* every SQLite failure surfaces as a :class:`~facegate.edge.errors.GalleryError`
  naming the file, never as a raw ``sqlite3`` traceback.

On-disk format of a template is private to :func:`encode_embedding` and
:func:`decode_embedding`; the schema evolves through :data:`MIGRATIONS`. Adding
encrypted templates later is one migration (e.g. a ``nonce``/``key_id``
column) plus new versions of those two functions.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GalleryError, GalleryModelMismatch, GallerySchemaError, PersonNotFound
from .types import Embedding, Match

log = logging.getLogger(__name__)

__all__ = [
    "Gallery",
    "PersonSummary",
    "MIGRATIONS",
    "APPLICATION_ID",
    "MAX_NAME_LENGTH",
    "NORM_TOLERANCE",
    "schema_version",
    "EMBEDDING_COLUMNS",
    "encode_embedding",
    "decode_embedding",
    "match_matrix",
]

#: ``PRAGMA application_id`` of a facegate gallery ("FGal"), so a SQLite file
#: of another program is refused instead of being written into.
APPLICATION_ID = 0x4647616C
MAX_NAME_LENGTH = 64
#: Accepted deviation of an embedding's L2 norm from 1.
NORM_TOLERANCE = 1e-3
DEFAULT_TIMEOUT_S = 5.0


# --- template storage format ----------------------------------------------------
#: The ``templates`` columns written by :func:`encode_embedding` and passed, in
#: this order, to :func:`decode_embedding`. Encrypted templates will add their
#: column (nonce, key id) here, in a migration, and in the two functions.
EMBEDDING_COLUMNS: tuple[str, ...] = ("dim", "embedding")


def encode_embedding(vector: np.ndarray) -> dict[str, Any]:
    """Column values (keys = :data:`EMBEDDING_COLUMNS`) that store one template vector.

    With :func:`decode_embedding`, the only code that knows the on-disk
    format: float32 little-endian bytes plus the dimension. Returning a column
    mapping lets a later format add columns without touching the insert SQL.
    """
    v = np.ascontiguousarray(vector, dtype="<f4")
    if v.ndim != 1:
        raise ValueError(f"expected a 1-D vector, got shape {v.shape}")
    return {"dim": int(v.shape[0]), "embedding": v.tobytes()}


def decode_embedding(dim: int, embedding: bytes) -> np.ndarray:
    """The float32 vector stored in one row's :data:`EMBEDDING_COLUMNS`; ValueError if inconsistent."""
    if not isinstance(embedding, bytes) or not isinstance(dim, int) or dim <= 0 or len(embedding) != 4 * dim:
        size = len(embedding) if isinstance(embedding, bytes) else type(embedding).__name__
        raise ValueError(f"stored embedding ({size} bytes) does not match dim={dim}")
    return np.frombuffer(embedding, dtype="<f4")


# --- schema -------------------------------------------------------------------------
def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """Create the first schema: people and their templates."""
    for sql in (
        """CREATE TABLE people (
               id         INTEGER PRIMARY KEY,
               name       TEXT NOT NULL UNIQUE,
               created_at TEXT NOT NULL,
               note       TEXT
           )""",
        """CREATE TABLE templates (
               id         INTEGER PRIMARY KEY,
               person_id  INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
               model_id   TEXT NOT NULL,
               dim        INTEGER NOT NULL CHECK (dim > 0),
               embedding  BLOB NOT NULL,
               quality    REAL,
               source     TEXT,
               created_at TEXT NOT NULL
           )""",
        "CREATE INDEX templates_person ON templates(person_id)",
        "CREATE INDEX templates_model ON templates(model_id)",
    ):
        conn.execute(sql)


#: ``MIGRATIONS[n]`` upgrades a database from schema version n to n + 1. All
#: pending steps run in one transaction on open (``executescript`` must not be
#: used in them: it commits).
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    0: _migrate_0_to_1,
}


def schema_version() -> int:
    """The schema version this code writes (read at call time so tests can extend it)."""
    n = len(MIGRATIONS)
    if sorted(MIGRATIONS) != list(range(n)):
        raise RuntimeError(f"MIGRATIONS must be keyed 0..{n - 1}, got {sorted(MIGRATIONS)}")
    return n


# --- validation -----------------------------------------------------------------
def _check_name(name: str) -> str:
    """The canonical form of a person's name (NFC, stripped), or ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, got {type(name).__name__}")
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise ValueError("name must not be empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise ValueError(f"name is {len(clean)} characters long; the limit is {MAX_NAME_LENGTH}")
    for ch in clean:
        cat = unicodedata.category(ch)
        if cat.startswith("C") or cat in ("Zl", "Zp"):
            raise ValueError(f"name {clean!r} contains a control or invisible character (U+{ord(ch):04X})")
    return clean


def _check_embedding(emb: Embedding, what: str = "embedding") -> np.ndarray:
    """The embedding's vector as float32 after checking shape, values and norm.

    Non-normalised vectors are refused rather than normalised: they mean the
    embedder or the caller is wrong, and distances would silently change.
    """
    model_id = getattr(emb, "model_id", None)
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"{what}: model_id must be a non-empty string, got {model_id!r}")
    v = np.asarray(getattr(emb, "vector", None))
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{what}: expected a non-empty 1-D vector, got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.floating):
        raise ValueError(f"{what}: expected a float vector, got dtype {v.dtype}")
    v64 = v.astype(np.float64)
    if not np.isfinite(v64).all():
        raise ValueError(f"{what}: vector contains NaN or infinite values")
    norm = float(np.linalg.norm(v64))
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise ValueError(
            f"{what}: vector is not L2-normalised (norm {norm:.6f}, expected 1 +- {NORM_TOLERANCE}); "
            "normalise it in the embedder"
        )
    return v.astype(np.float32)


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"threshold must be a finite distance >= 0, got {threshold!r}")
    return t


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# --- matching -----------------------------------------------------------------------
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
        raise ValueError(f"expected 2-D arrays, got query {q.shape} and templates {t.shape}")
    if q.shape[1] != t.shape[1] and t.shape[0] > 0:
        raise ValueError(f"dimension mismatch: query has {q.shape[1]}, templates have {t.shape[1]}")
    if t.shape[0] == 0:
        return np.empty((q.shape[0], 0), dtype=t.dtype)
    d = q @ t.T
    d *= -2.0
    d += 2.0
    np.maximum(d, 0.0, out=d)
    np.sqrt(d, out=d)
    return d


@dataclass(frozen=True)
class PersonSummary:
    """One enrolled person as listed by :meth:`Gallery.people`."""

    name: str
    templates: int
    model_ids: tuple[str, ...]
    created_at: datetime
    note: str | None = None


@dataclass(frozen=True)
class _Block:
    """All templates of one model, rows grouped by person for ``reduceat``."""

    row_names: list[str]  # person name of each row
    matrix: np.ndarray  # (n, dim) float32, read-only
    person_names: list[str]  # one per group, in row order
    starts: np.ndarray  # (k,) first row of each person's group

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


class Gallery:
    """Enrolled people and their face templates in one SQLite file.

    ``Gallery(":memory:")`` is a throw-away gallery for tests. With
    ``readonly=True`` the file must exist and be at the current schema; every
    write raises :class:`GalleryError`. Safe to share between threads (one lock
    serialises calls); other processes may write the same file concurrently.
    """

    match_matrix = staticmethod(match_matrix)

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._memory = str(path) == ":memory:"
        self.path: Path | str = ":memory:" if self._memory else Path(path)
        self.readonly = bool(readonly)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._blocks: dict[str, _Block] = {}
        self._data_version: int | None = None
        if self._memory and self.readonly:
            raise ValueError("a read-only :memory: gallery would always be empty")
        self._conn = self._open(timeout)

    # --- opening, schema ------------------------------------------------------------
    def _open(self, timeout: float) -> sqlite3.Connection:
        target: str
        uri = False
        if self._memory:
            target = ":memory:"
        elif self.readonly:
            assert isinstance(self.path, Path)
            if not self.path.is_file():
                raise GalleryError(f"{self.path}: no such gallery file")
            target, uri = self.path.resolve().as_uri() + "?mode=ro", True
        else:
            assert isinstance(self.path, Path)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GalleryError(f"{self.path}: cannot create directory: {exc.strerror or exc}") from None
            target = str(self.path)
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(target, timeout=timeout, uri=uri, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            # The first real read: a file that is not SQLite fails here.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            self._check_identity(conn, version, app_id)
            if not self.readonly:
                conn.execute("PRAGMA synchronous = NORMAL")
                if not self._memory:
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if str(mode).lower() != "wal":
                        log.warning("%s: WAL journal not available, using %s", self.path, mode)
                self._migrate(conn)
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        except (GalleryError, ValueError):
            if conn is not None:
                conn.close()
            raise
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise GalleryError(f"{self.path}: cannot open gallery: {exc}") from None
        log.debug("opened gallery %s (schema v%d%s)", self.path, schema_version(), ", read-only" if self.readonly else "")
        return conn

    def _check_identity(self, conn: sqlite3.Connection, version: int, app_id: int) -> None:
        """Refuse SQLite files of other programs and of newer facegate versions."""
        if app_id not in (0, APPLICATION_ID):
            raise GalleryError(f"{self.path}: not a facegate gallery (application_id {app_id:#x})")
        target = schema_version()
        if version > target:
            raise GallerySchemaError(
                f"{self.path}: gallery schema v{version} is newer than this facegate supports (v{target}); "
                "upgrade facegate"
            )
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables:
                raise GalleryError(f"{self.path}: not a facegate gallery (SQLite file with {tables} foreign tables)")
        if self.readonly and version < target:
            if version == 0:
                raise GalleryError(f"{self.path}: empty file, not a facegate gallery")
            raise GallerySchemaError(
                f"{self.path}: gallery schema v{version} is older than v{target}; open it once read-write to upgrade"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the schema to :func:`schema_version` in one transaction."""
        target = schema_version()
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > target:
                raise GallerySchemaError(f"{self.path}: gallery schema v{version} is newer than v{target}")
            for step in range(version, target):
                log.info("%s: migrating gallery schema v%d -> v%d", self.path, step, step + 1)
                try:
                    MIGRATIONS[step](conn)
                except sqlite3.Error as exc:
                    raise GallerySchemaError(f"{self.path}: migration v{step} -> v{step + 1} failed: {exc}") from None
            if version < target:
                conn.execute(f"PRAGMA user_version = {int(target)}")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

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
    ) -> int:
        """Add templates for ``name`` (created if new); return how many were added.

        All embeddings are checked before anything is written and the insert is
        one transaction, so a bad embedding leaves the gallery unchanged. They
        must come from the same model as every template already stored.
        ``note`` is stored on the person (replacing an earlier note) when given.
        """
        name = _check_name(name)
        embeddings = list(embeddings)
        if not embeddings:
            raise ValueError("enroll needs at least one embedding")
        n = len(embeddings)
        src = [None] * n if sources is None else list(sources)
        qual = [None] * n if qualities is None else list(qualities)
        if len(src) != n or len(qual) != n:
            raise ValueError(f"got {n} embeddings but {len(src)} sources and {len(qual)} qualities")
        for i, s in enumerate(src):
            if s is not None and not isinstance(s, str):
                raise ValueError(f"sources[{i}] must be a string or None, got {type(s).__name__}")
        for i, q in enumerate(qual):
            if q is not None and not math.isfinite(float(q)):
                raise ValueError(f"qualities[{i}] must be finite or None, got {q!r}")
        vectors = [_check_embedding(e, f"embeddings[{i}]") for i, e in enumerate(embeddings)]
        model_id = embeddings[0].model_id
        others = sorted({e.model_id for e in embeddings} - {model_id})
        if others:
            raise GalleryModelMismatch(
                f"cannot enroll embeddings of several models at once ({model_id!r} and {', '.join(map(repr, others))})"
            )
        dims = {v.shape[0] for v in vectors}
        if len(dims) != 1:
            raise ValueError(f"embeddings have different dimensions {sorted(dims)}")
        dim = dims.pop()

        with self._write("enroll") as conn:
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
                raise ValueError(f"model {model_id!r} templates in the gallery have dim {row[0]}, got {dim}")
            now = _now()
            person = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if person is None:
                person_id = conn.execute(
                    "INSERT INTO people (name, created_at, note) VALUES (?, ?, ?)", (name, now, note)
                ).lastrowid
            else:
                person_id = person[0]
                if note is not None:
                    conn.execute("UPDATE people SET note = ? WHERE id = ?", (note, person_id))
            rows = [
                {
                    "person_id": person_id,
                    "model_id": model_id,
                    "quality": None if q is None else float(q),
                    "source": s,
                    "created_at": now,
                    **encode_embedding(v),
                }
                for v, s, q in zip(vectors, src, qual)
            ]
            cols = list(rows[0])  # fixed identifiers from this module, never user input
            conn.executemany(
                f"INSERT INTO templates ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})", rows
            )
        log.info("enrolled %d template(s) for %r (model %s)", n, name, model_id)
        return n

    def remove(self, name: str) -> int:
        """Delete a person and all their templates; return how many templates went."""
        name = _check_name(name)
        with self._write("remove") as conn:
            person = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if person is None:
                raise PersonNotFound(f"{name!r} is not enrolled")
            count = conn.execute("SELECT count(*) FROM templates WHERE person_id = ?", (person[0],)).fetchone()[0]
            conn.execute("DELETE FROM people WHERE id = ?", (person[0],))  # templates cascade
        log.info("removed %r and %d template(s)", name, count)
        return int(count)

    # --- reads ---------------------------------------------------------------------------
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
            name = _check_name(name)
        except ValueError:
            return False
        with self._sql("look up person") as conn:
            return conn.execute("SELECT 1 FROM people WHERE name = ?", (name,)).fetchone() is not None

    def reload(self) -> None:
        """Forget cached templates; the next match reads them from the file again."""
        with self._lock:
            self._db()
            self._blocks.clear()

    def templates(self, model_id: str) -> tuple[list[str], np.ndarray]:
        """Person name per row and the (n, dim) float32 matrix of one model's templates.

        The matrix is the cached, read-only array used for matching; rows of one
        person are adjacent. An unknown model gives ``([], empty (0, 0))``.
        """
        block = self._block(model_id)
        return list(block.row_names), block.matrix

    def _block(self, model_id: str) -> _Block:
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
                    f"""SELECT t.id, t.person_id, p.name, {", ".join("t." + c for c in EMBEDDING_COLUMNS)}
                        FROM templates t JOIN people p ON p.id = t.person_id
                        WHERE t.model_id = ? ORDER BY t.person_id, t.id""",
                    (model_id,),
                ).fetchall()
                block = self._blocks[model_id] = self._build_block(model_id, rows)
        return block

    def _build_block(self, model_id: str, rows: list[tuple]) -> _Block:
        if not rows:
            empty = np.empty((0, 0), dtype=np.float32)
            empty.flags.writeable = False
            return _Block([], empty, [], np.empty(0, dtype=np.intp))
        matrix: np.ndarray | None = None
        person_ids = np.empty(len(rows), dtype=np.int64)
        for i, row in enumerate(rows):
            try:
                vec = decode_embedding(*row[3:])
                if matrix is None:
                    matrix = np.empty((len(rows), vec.shape[0]), dtype=np.float32)
                elif vec.shape[0] != matrix.shape[1]:
                    raise ValueError(f"dim {vec.shape[0]} differs from the model's dim {matrix.shape[1]}")
            except ValueError as exc:
                raise GalleryError(f"{self.path}: template {row[0]} of model {model_id!r}: {exc}") from None
            matrix[i] = vec
            person_ids[i] = row[1]
        assert matrix is not None
        matrix.flags.writeable = False
        starts = np.flatnonzero(np.r_[True, person_ids[1:] != person_ids[:-1]])
        row_names = [row[2] for row in rows]
        return _Block(row_names, matrix, [row_names[s] for s in starts], starts)

    def _block_for(self, embedding: Embedding) -> tuple[np.ndarray, _Block | None]:
        """Checked query vector and the templates it may be compared with (None: empty gallery)."""
        vec = _check_embedding(embedding, "query embedding")
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
            raise ValueError(f"query embedding has dim {vec.shape[0]}, gallery templates have dim {block.dim}")
        return vec, block

    # --- matching -----------------------------------------------------------------------
    def identify(self, embedding: Embedding, threshold: float) -> Match:
        """1:K: the nearest enrolled person, accepted if within ``threshold``.

        A person's distance is the minimum over their templates. ``best_name``
        is always the nearest person; ``name`` only when accepted. An empty
        gallery gives ``name=None, distance=inf, candidates=0`` (nobody to
        match is a rejection, not an error).
        """
        threshold = _check_threshold(threshold)
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
        name = _check_name(name)
        threshold = _check_threshold(threshold)
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
