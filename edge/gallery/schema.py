"""The gallery database's schema: every table, its migrations, and opening the file.

One owner for every table in the file: the people and templates of the
gallery and the ``events`` of the audit log are created here, by numbered
migrations, so whichever opens the file first (the gallery, the audit log,
the CLI) leaves it at the same schema and the other one accepts it.

Templates are sealed with AES-GCM since schema v3 (:mod:`.protection`);
:func:`encode_embedding` and :func:`decode_embedding` are the clear-text
format that older files hold, read once when such a file is encrypted in
place. Every connection runs with ``secure_delete`` on, so deleted rows
(a removed person's templates) are overwritten with zeros, not left in free
pages, and a new file is created with a private mode (:mod:`.files`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError, GallerySchemaError
from .files import PRIVATE, ensure_private_file, tighten

log = logging.getLogger(__name__)

#: ``PRAGMA application_id`` of a facegate gallery ("FGal"), so a SQLite file
#: of another program is refused instead of being written into.
APPLICATION_ID = 0x4647616C
DEFAULT_TIMEOUT_S = 5.0


# --- the clear-text template format of schema v1-v2 ---------------------------------
#: The ``templates`` columns of a clear-text template (key_id NULL): what
#: :func:`encode_embedding` writes and :func:`decode_embedding` reads. Since
#: v3 new rows are sealed (:mod:`.protection`); these two read and (in tests and
#: the benchmark) write the older format, which files of earlier versions hold.
EMBEDDING_COLUMNS: tuple[str, ...] = ("dim", "embedding")


def encode_embedding(vector: np.ndarray) -> dict[str, Any]:
    """Column values (keys = :data:`EMBEDDING_COLUMNS`) of one clear-text template:
    float32 little-endian bytes plus the dimension."""
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


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """The audit log's ``events`` table (it used to create it on its own)."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS events (
               id          INTEGER PRIMARY KEY,
               ts          REAL    NOT NULL,  -- wall clock, time.time()
               outcome     TEXT    NOT NULL,
               name        TEXT,
               distance    REAL,
               threshold   REAL,
               model_id    TEXT,
               reason      TEXT    NOT NULL DEFAULT '',
               frames_used INTEGER NOT NULL DEFAULT 0,
               latency_ms  REAL,
               extra       TEXT    NOT NULL DEFAULT '{}'  -- JSON object
           )"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS events_ts ON events (ts)")


MIGRATIONS[1] = _migrate_1_to_2


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Encrypted templates (``key_id``: NULL = clear text, sealed by :mod:`.protection` on open),
    the file's own settings, and an index for the audit log's per-outcome quotas."""
    from .names import skeleton

    conn.execute("ALTER TABLE templates ADD COLUMN key_id TEXT")
    conn.execute("CREATE TABLE IF NOT EXISTS gallery_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("CREATE INDEX IF NOT EXISTS events_outcome ON events (outcome, id)")
    # what each name looks like, so a look-alike is found with one indexed query
    conn.execute("ALTER TABLE people ADD COLUMN skeleton TEXT")
    for pid, name in conn.execute("SELECT id, name FROM people").fetchall():
        conn.execute("UPDATE people SET skeleton = ? WHERE id = ?", (skeleton(name), pid))
    conn.execute("CREATE INDEX people_skeleton ON people (skeleton)")


MIGRATIONS[2] = _migrate_2_to_3

#: The audit's decision embeddings (:mod:`facegate.edge.audit`): ``held_embeddings`` keeps the
#: newest decisions' so that a wrong one can still be marked; ``feedback`` keeps each one marked
#: wrong, for calibration. A face embedding is biometric data like a template, so both are sealed
#: with the gallery's key (``key_id``; NULL only in a ``feedback`` row marked before v4).
DECISION_TABLES = (
    """CREATE TABLE IF NOT EXISTS held_embeddings (
           event_id  INTEGER PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
           model_id  TEXT    NOT NULL,
           dim       INTEGER NOT NULL CHECK (dim > 0),
           embedding BLOB    NOT NULL
       )""",
    """CREATE TABLE IF NOT EXISTS feedback (
           event_id  INTEGER PRIMARY KEY,
           ts        REAL    NOT NULL,
           outcome   TEXT    NOT NULL,
           name      TEXT,
           actual    TEXT,
           model_id  TEXT    NOT NULL,
           dim       INTEGER NOT NULL CHECK (dim > 0),
           embedding BLOB    NOT NULL,
           marked_at REAL    NOT NULL
       )""",
)


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """The audit's decision embeddings, sealed. Before v4 the two tables were made on first use, outside
    the numbered schema, with clear-text vectors: the held ones (a convenience for marking) are dropped,
    the marked ones kept (read as clear text until marked again)."""
    for sql in DECISION_TABLES:
        conn.execute(sql)
    for table in ("held_embeddings", "feedback"):
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if "key_id" not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN key_id TEXT")
    dropped = conn.execute("DELETE FROM held_embeddings WHERE key_id IS NULL").rowcount
    if dropped:
        log.info("dropped %d clear-text decision embedding(s) held for marking", dropped)


MIGRATIONS[3] = _migrate_3_to_4


def schema_version() -> int:
    """The schema version this code writes (read at call time so tests can extend it)."""
    n = len(MIGRATIONS)
    if sorted(MIGRATIONS) != list(range(n)):
        raise RuntimeError(f"MIGRATIONS must be keyed 0..{n - 1}, got {sorted(MIGRATIONS)}")
    return n


def connect(path: Path | str, *, readonly: bool = False, timeout: float = DEFAULT_TIMEOUT_S,
            mode: int = PRIVATE) -> sqlite3.Connection:
    """Open (and, read-write, create or migrate) a facegate database file.

    ``":memory:"`` is a throw-away database. A new file is created with exactly
    ``mode`` (0600, or 0640), whatever the umask; an existing one more open than
    that is tightened. Every failure is a one-line :class:`GalleryError` naming
    the file.
    """
    memory = str(path) == ":memory:"
    uri = False
    if memory:
        if readonly:
            raise GalleryError("a read-only :memory: gallery would always be empty")
        target = ":memory:"
    elif readonly:
        path = Path(path)
        if not path.is_file():
            raise GalleryError(f"{path}: no such gallery file")
        target, uri = path.resolve().as_uri() + "?mode=ro", True
    else:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GalleryError(f"{path}: cannot create directory: {exc.strerror or exc}") from None
        ensure_private_file(path, mode)
        for suffix in ("-wal", "-shm"):
            tighten(f"{path}{suffix}", mode)
        target = str(path)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(target, timeout=timeout, uri=uri, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        # The first real read: a file that is not SQLite fails here.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        _check_identity(conn, path, version, app_id, readonly)
        if not readonly:
            conn.execute("PRAGMA synchronous = NORMAL")
            if not memory:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    log.warning("%s: WAL journal not available, using %s", path, mode)
            _migrate(conn, path)
    except (GalleryError, ValueError):
        if conn is not None:
            conn.close()
        raise
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise GalleryError(f"{path}: cannot open gallery: {exc}") from None
    log.debug("opened %s (schema v%d%s)", path, schema_version(), ", read-only" if readonly else "")
    return conn


def _check_identity(conn: sqlite3.Connection, path: Path | str, version: int, app_id: int, readonly: bool) -> None:
    """Refuse SQLite files of other programs and of newer facegate versions."""
    if app_id not in (0, APPLICATION_ID):
        raise GalleryError(f"{path}: not a facegate gallery (application_id {app_id:#x})")
    target = schema_version()
    if version > target:
        raise GallerySchemaError(
            f"{path}: gallery schema v{version} is newer than this facegate supports (v{target}); upgrade facegate"
        )
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if tables:
            raise GalleryError(f"{path}: not a facegate gallery (SQLite file with {tables} foreign tables)")
    if readonly and version < target:
        if version == 0:
            raise GalleryError(f"{path}: empty file, not a facegate gallery")
        raise GallerySchemaError(
            f"{path}: gallery schema v{version} is older than v{target}; open it once read-write to upgrade"
        )


def _migrate(conn: sqlite3.Connection, path: Path | str) -> None:
    """Bring the schema to :func:`schema_version` in one transaction."""
    target = schema_version()
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > target:
            raise GallerySchemaError(f"{path}: gallery schema v{version} is newer than v{target}")
        for step in range(version, target):
            log.info("%s: migrating gallery schema v%d -> v%d", path, step, step + 1)
            try:
                MIGRATIONS[step](conn)
            except sqlite3.Error as exc:
                raise GallerySchemaError(f"{path}: migration v{step} -> v{step + 1} failed: {exc}") from None
        if version < target:
            conn.execute(f"PRAGMA user_version = {int(target)}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
