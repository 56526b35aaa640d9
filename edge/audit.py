"""An append-only record of what the door decided, and why.

Every :class:`~facegate.edge.types.Decision` goes to an ``events`` table in
SQLite and to the ``facegate.audit`` logger, so any unlock (or refusal) can be
explained afterwards: who, at what distance, against which threshold, with
which model. Only numbers and short strings are kept, never face images:
array-like values in ``Decision.extra`` are replaced by a placeholder.

The ``events`` table lives in the gallery's database file and is created by
the gallery's migrations (:mod:`facegate.edge.gallery.schema`), so opening the
log first or the gallery first gives the same file; the log opens its own
connection and writes nothing but ``events``. Door-contact changes are kept
as :class:`~facegate.edge.types.DoorEvent` rows beside the decisions
(``outcome`` "door_open" / "door_closed").

Privacy and retention rules, enforced here rather than by callers:

* growth is bounded by age (``retention_days``) and by count, pruned on open,
  every ``prune_every`` writes and on time (a background timer every
  ``prune_interval_s``, so an idle door still forgets on schedule);
* grants have their own quota (``max_grants``) apart from everything else
  (``max_events``): a flood of denials can never push a grant out of the
  record;
* a row that is not a grant never names anyone: the nearest enrolled person
  of a refused face is dropped from ``name``, ``extra`` and the reason text
  (it would tell a stranger, or whoever reads the log, whom they resemble);
* face crops are kept only when a folder is given (``[storage]
  save_face_images``), written private, and pruned with their events.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import AuditError, AuditSchemaError, GalleryError
from .gallery.files import PRIVATE, write_private
from .types import AUDITED_OUTCOMES, Decision, DoorEvent, DoorState, Outcome

__all__ = ["AuditEntry", "AuditLog", "Feedback", "clear_mark", "hold_embedding", "list_decisions", "mark_wrong",
           "marked_feedback"]

logger = logging.getLogger("facegate.audit")

_COLUMNS = (
    "id", "ts", "outcome", "name", "distance", "threshold",
    "model_id", "reason", "frames_used", "latency_ms", "extra",
)

_MAX_TEXT = 500  # longest string kept from Decision.extra
#: Keys of ``Decision.extra`` that name an enrolled person; kept on grants only.
_NAME_KEYS = frozenset({"best_name", "runner_up", "nearest", "name", "claimed"})
_SOMEONE = "an enrolled person"


def anonymised(decision: Decision) -> Decision:
    """The decision as a refusal may be recorded: without the names of enrolled people."""
    if decision.outcome == Outcome.GRANT:
        return decision
    extra = decision.extra or {}
    names = {v for v in (decision.name, *(extra.get(k) for k in _NAME_KEYS)) if isinstance(v, str) and v}
    reason = decision.reason or ""
    for n in sorted(names, key=len, reverse=True):  # whole words only: a name "E" must not eat every e
        reason = re.sub(rf"(?<!\w){re.escape(n)}(?!\w)", _SOMEONE, reason)
    return replace(decision, name=None, reason=reason, extra={k: v for k, v in extra.items() if k not in _NAME_KEYS})


def _json_default(value: Any) -> Any:
    """Make extra JSON-safe without ever serialising an image."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()  # numpy scalar
    if hasattr(value, "shape"):
        return f"<array shape={tuple(value.shape)} omitted>"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes omitted>"
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    text = str(value)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


class AuditLog:
    """SQLite-backed audit trail of decisions.

    :param path: database file (may be the gallery's) or ``":memory:"``.
    :param retention_days: events older than this (by ``Decision.timestamp``)
        are deleted; None keeps them regardless of age.
    :param max_events: keep at most this many newest events other than
        grants; None = no cap.
    :param max_grants: keep at most this many newest grants (their own quota);
        None = no cap.
    :param prune_every: prune after this many writes (and on open).
    :param prune_interval_s: also prune this often on a timer thread (and on
        the first write after it elapsed); None = no timer.
    :param faces_dir: keep face crops here (:meth:`save_face`); None = never.
    :param file_mode: 0o600, or 0o640 for the unit's group.
    :param wallclock: "now" for age pruning; injected by tests.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        retention_days: float | None = 90,
        max_events: int | None = 100_000,
        *,
        max_grants: int | None = 100_000,
        prune_every: int = 1000,
        prune_interval_s: float | None = 3600.0,
        faces_dir: str | os.PathLike[str] | None = None,
        file_mode: int = PRIVATE,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        if retention_days is not None and not retention_days > 0:
            raise ValueError(f"retention_days must be > 0 or None, got {retention_days!r}")
        if max_events is not None and (isinstance(max_events, bool) or int(max_events) != max_events or max_events < 1):
            raise ValueError(f"max_events must be an integer >= 1 or None, got {max_events!r}")
        if max_grants is not None and (isinstance(max_grants, bool) or int(max_grants) != max_grants or max_grants < 1):
            raise ValueError(f"max_grants must be an integer >= 1 or None, got {max_grants!r}")
        if prune_every < 1:
            raise ValueError(f"prune_every must be >= 1, got {prune_every!r}")
        if prune_interval_s is not None and not prune_interval_s > 0:
            raise ValueError(f"prune_interval_s must be > 0 or None, got {prune_interval_s!r}")
        self.path = str(path)
        self.retention_days = retention_days
        self.max_events = None if max_events is None else int(max_events)
        self.max_grants = None if max_grants is None else int(max_grants)
        self.prune_every = int(prune_every)
        self.prune_interval_s = prune_interval_s
        self.file_mode = file_mode
        self._wallclock = wallclock
        self._lock = threading.Lock()
        self._writes = 0
        self._next_prune = math.inf
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.faces_dir = None if faces_dir is None else Path(faces_dir)
        from .gallery.schema import connect

        if self.faces_dir is not None:
            try:
                self.faces_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(self.faces_dir, 0o700 if file_mode == PRIVATE else 0o750)
            except OSError as e:
                raise AuditError(f"cannot keep face crops in {self.faces_dir}: {e.strerror or e}") from None
        try:
            conn = connect(self.path, mode=file_mode)
        except GalleryError as e:
            raise AuditSchemaError(f"cannot keep the audit 'events' table there: {e}") from None
        try:
            conn.row_factory = None
            cols = tuple(row[1] for row in conn.execute("PRAGMA table_info(events)"))
            if cols != _COLUMNS:
                raise AuditSchemaError(
                    f"{self.path}: table 'events' has columns {cols}, expected {_COLUMNS}; "
                    "it belongs to something else or to another facegate version"
                )
        except sqlite3.Error as e:
            conn.close()
            raise AuditError(f"cannot open audit log {self.path}: {e}") from e
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        removed = self.prune()
        if removed:
            logger.debug("audit: pruned %d old events on open", removed)
        if prune_interval_s is not None:
            self._timer = threading.Thread(target=self._prune_on_time, name="audit-prune", daemon=True)
            self._timer.start()

    def _prune_on_time(self) -> None:
        """Timer thread: retention holds even when nothing is written for weeks."""
        assert self.prune_interval_s is not None
        while not self._stop.wait(self.prune_interval_s):
            try:
                self.prune()
            except AuditError:
                return  # closed
            except (sqlite3.Error, OSError) as e:  # a busy or full disk: try again next time
                logger.warning("audit: timed prune failed: %s", e)

    # -- lifecycle ---------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._stop.set()
        timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=5)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise AuditError(f"audit log {self.path} is closed")
        return self._conn

    # -- writing ---------------------------------------------------------------------
    def record(self, event: Decision | DoorEvent) -> int:
        """Store one decision or door event (and log it); returns its row id."""
        self._connection()  # closed: fail before logging an event we cannot keep
        if isinstance(event, DoorEvent):
            logger.info("door %s", event.state)
            return self._insert((float(event.timestamp), event.outcome, None, None, None, None,
                                 "door contact", 0, None, "{}"))
        decision = anonymised(event)
        self._log(decision)
        extra = json.dumps(decision.extra or {}, default=_json_default, sort_keys=True)
        return self._insert(
                (
                    float(decision.timestamp),
                    str(decision.outcome),
                    decision.name,
                    None if decision.distance is None else float(decision.distance),
                    None if decision.threshold is None else float(decision.threshold),
                    decision.model_id,
                    decision.reason or "",
                    int(decision.frames_used),
                    None if decision.latency_ms is None else float(decision.latency_ms),
                    extra,
                ))

    def _insert(self, row: tuple) -> int:
        with self._lock:
            conn = self._connection()
            cur = conn.execute(
                "INSERT INTO events (ts, outcome, name, distance, threshold, model_id,"
                " reason, frames_used, latency_ms, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            row_id = int(cur.lastrowid)
            self._writes += 1
            due = self._writes % self.prune_every == 0 or time.monotonic() >= self._next_prune
        if due:
            self.prune()
        return row_id

    def prune(self, now: float | None = None) -> int:
        """Delete events past the age and count limits; returns how many."""
        now = self._wallclock() if now is None else now
        removed = 0
        with self._lock:
            conn = self._connection()
            if self.retention_days is not None:
                cutoff = now - self.retention_days * 86400.0
                removed += conn.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
            # Newest by insertion order (id), not ts: the wall clock can jump.
            # Grants and the rest have separate quotas.
            for limit, which in ((self.max_events, "outcome != 'grant'"), (self.max_grants, "outcome = 'grant'")):
                if limit is not None:
                    removed += conn.execute(
                        f"DELETE FROM events WHERE {which} AND id <= "  # noqa: S608 - fixed text
                        f"(SELECT id FROM events WHERE {which} ORDER BY id DESC LIMIT 1 OFFSET ?)",
                        (limit,),
                    ).rowcount
            if self.prune_interval_s is not None:
                self._next_prune = time.monotonic() + self.prune_interval_s
            if self.faces_dir is not None:
                removed_faces = self._prune_faces(conn, now)
                if removed_faces:
                    logger.debug("audit: pruned %d face crops", removed_faces)
        return removed

    # -- face crops ----------------------------------------------------------------
    def save_face(self, event_id: int, outcome: str, image: Any) -> Path | None:
        """Keep the face crop of event ``event_id`` (a private JPEG); None when crops are off."""
        if self.faces_dir is None:
            return None
        import cv2

        ok, data = cv2.imencode(".jpg", image)
        if not ok:
            raise AuditError(f"cannot encode the face crop of event {event_id}")
        path = self.faces_dir / f"{int(event_id):08d}-{Outcome(outcome).value}.jpg"
        try:
            write_private(path, data.tobytes(), self.file_mode, replace=True)
        except GalleryError as e:
            raise AuditError(str(e)) from None
        return path

    def _prune_faces(self, conn: sqlite3.Connection, now: float) -> int:
        """Delete crops whose event is gone (age or quota) or that are past retention."""
        assert self.faces_dir is not None
        files: dict[int, Path] = {}
        for f in self.faces_dir.glob("*.jpg"):
            head = f.name.split("-", 1)[0]
            if head.isdigit():
                files[int(head)] = f
        if not files:
            return 0
        kept = {r[0] for r in conn.execute("SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))",
                                           (json.dumps(sorted(files)),))}
        cutoff = None if self.retention_days is None else now - self.retention_days * 86400.0
        removed = 0
        for event_id, f in files.items():
            try:
                if event_id not in kept or (cutoff is not None and f.stat().st_mtime < cutoff):
                    f.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    # -- reading ---------------------------------------------------------------------
    def recent(self, limit: int = 50) -> list[Decision | DoorEvent]:
        """The newest ``limit`` decisions and door events, newest first."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT ts, outcome, name, distance, threshold, model_id, reason,"
                " frames_used, latency_ms, extra FROM events ORDER BY id DESC LIMIT ?",
                (int(limit),),
            ).fetchall()
        return [
            DoorEvent(ts, DoorState(outcome.removeprefix("door_"))) if outcome.startswith("door_") else Decision(
                timestamp=ts, outcome=Outcome(outcome), name=name, distance=distance, threshold=threshold,
                model_id=model_id, reason=reason, frames_used=frames_used, latency_ms=latency_ms,
                extra=json.loads(extra) if extra else {},
            )
            for ts, outcome, name, distance, threshold, model_id, reason, frames_used, latency_ms, extra in rows
        ]

    def count(self) -> int:
        """Number of stored events."""
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    # -- logging ---------------------------------------------------------------------
    @staticmethod
    def _log(d: Decision) -> None:
        level = logging.INFO if d.outcome in AUDITED_OUTCOMES else logging.DEBUG
        if not logger.isEnabledFor(level):
            return
        logger.log(
            level,
            "%s name=%s distance=%s threshold=%s model=%s frames=%d latency_ms=%s reason=%s",
            d.outcome,
            d.name,
            "-" if d.distance is None else f"{d.distance:.4f}",
            "-" if d.threshold is None else f"{d.threshold:.4f}",
            d.model_id,
            d.frames_used,
            "-" if d.latency_ms is None else f"{d.latency_ms:.1f}",
            d.reason,
        )

    def __repr__(self) -> str:
        return f"<AuditLog {self.path!r}{' closed' if self.closed else ''}>"


# --- field feedback: listing decisions, marking the wrong ones ---------------------------
# Kept apart from AuditLog's own methods. The two tables are the gallery schema's (v4,
# :data:`facegate.edge.gallery.schema.DECISION_TABLES`):
#
# ``held_embeddings``: the face embedding (numbers, never an image) of the newest
# HELD_EMBEDDINGS audited decisions, so that a wrong one can still be marked; older ones
# are dropped as new decisions come, and each goes with its event (retention).
# ``feedback``: the embedding of each decision marked wrong, kept for calibration.
#
# An embedding is biometric data like a template: both are sealed with the gallery's
# template key (AES-GCM bound to the event, :func:`~facegate.edge.gallery.crypto.decision_aad`),
# so a copied file gives them up no more than it gives up the templates. Without a key
# nothing is held.

#: How many recent decisions keep their embedding for marking.
HELD_EMBEDDINGS = 500
#: The decisions that can be marked wrong: a grant (an impostor let in, or the wrong person)
#: and a deny (an enrolled person refused).
MARKABLE = ("grant", "deny")


def _open_decision(cipher: Any, event_id: int, model_id: str, dim: int, blob: bytes, key_id: str | None) -> Any:
    """The vector of a held or marked decision; AuditError when it cannot be read with ``cipher``."""
    import numpy as np

    from .gallery.crypto import decision_aad
    from .gallery.schema import decode_embedding

    if key_id is None:  # marked before v4, when they were kept in clear text
        return np.array(decode_embedding(dim, blob))
    if cipher is None or cipher.key_id != key_id:
        have = "no key" if cipher is None else f"key {cipher.key_id}"
        raise AuditError(f"decision {event_id}: its embedding is sealed with key {key_id} and {have} was given "
                         "(the gallery's key opens it)")
    return np.array(cipher.open(blob, decision_aad(event_id, model_id, dim), dim, f"decision {event_id}"))


def hold_embedding(log: AuditLog, event_id: int, vector: Any, model_id: str, cipher: Any,
                   keep: int = HELD_EMBEDDINGS) -> bool:
    """Keep the embedding of audited decision ``event_id`` for marking, sealed with ``cipher`` (the
    gallery's :meth:`~facegate.edge.gallery.Gallery.template_cipher`); drop all but the newest ``keep``.

    Returns whether it was kept: without a key (a gallery not yet encrypted) nothing is.
    """
    import numpy as np

    from .gallery.crypto import decision_aad

    if cipher is None:
        return False
    v = np.ascontiguousarray(vector, dtype="<f4").reshape(-1)
    sealed = cipher.seal(v, decision_aad(event_id, model_id, v.shape[0]))
    with log._lock:
        conn = log._connection()
        conn.execute("INSERT OR REPLACE INTO held_embeddings (event_id, model_id, dim, embedding, key_id) "
                     "VALUES (?, ?, ?, ?, ?)", (int(event_id), model_id, int(v.shape[0]), sealed, cipher.key_id))
        conn.execute("DELETE FROM held_embeddings WHERE event_id <= "
                     "(SELECT event_id FROM held_embeddings ORDER BY event_id DESC LIMIT 1 OFFSET ?)", (int(keep),))
    return True


@dataclass(frozen=True)
class AuditEntry:
    """One audited decision as ``facegate audit`` lists it."""

    id: int
    timestamp: float
    outcome: str
    name: str | None  # granted to (grant) or None
    best_name: str | None  # the nearest enrolled person
    distance: float | None
    threshold: float | None
    model_id: str | None
    reason: str
    markable: bool  # an embedding is still held, or the mark is already kept
    marked_wrong: bool
    actual: str | None  # who it really was, when marked with --was


@dataclass(frozen=True)
class Feedback:
    """A decision marked wrong, with its embedding: one more score for calibration."""

    event_id: int
    outcome: str  # "grant" (a false match) or "deny" (a false non-match)
    name: str | None
    actual: str | None
    model_id: str
    vector: Any  # (dim,) float32


def list_decisions(log: AuditLog, limit: int = 20, outcomes: tuple[str, ...] = MARKABLE) -> list[AuditEntry]:
    """The newest ``limit`` decisions of the given outcomes, newest first, with their marks."""
    with log._lock:
        conn = log._connection()
        sql = ("SELECT e.id, e.ts, e.outcome, e.name, e.distance, e.threshold, e.model_id, e.reason, e.extra, "
               "h.event_id IS NOT NULL, f.event_id IS NOT NULL, f.actual FROM events e "
               "LEFT JOIN held_embeddings h ON h.event_id = e.id LEFT JOIN feedback f ON f.event_id = e.id "
               f"WHERE e.outcome IN ({', '.join('?' * len(outcomes))}) ORDER BY e.id DESC LIMIT ?")
        rows = conn.execute(sql, (*outcomes, int(limit))).fetchall()
    out = []
    for (id_, ts, outcome, name, distance, threshold, model_id, reason, extra, has_vec, marked, actual) in rows:
        try:
            best = json.loads(extra or "{}").get("best_name")
        except ValueError:
            best = None
        out.append(AuditEntry(int(id_), ts, outcome, name, best, distance, threshold, model_id, reason or "",
                              bool(has_vec or marked) and outcome in MARKABLE, bool(marked), actual))
    return out


def mark_wrong(log: AuditLog, event_id: int, actual: str | None = None, *, cipher: Any,
               wallclock: Callable[[], float] = time.time) -> Feedback:
    """Mark decision ``event_id`` as wrong and keep its embedding for the next calibration.

    ``actual``: who it really was (an enrolled person's name), or None for a
    stranger. A wrong grant joins the impostor scores (against everyone but
    ``actual``); a wrong deny the genuine scores of ``actual``, or of the
    nearest person when not given. ``cipher``: the gallery's template key,
    which sealed the held embedding (it stays sealed, bound to the event).
    """
    with log._lock:
        conn = log._connection()
        event = conn.execute("SELECT ts, outcome, name, extra FROM events WHERE id = ?", (int(event_id),)).fetchone()
        if event is None:
            raise AuditError(f"no decision {event_id} in the audit log (see facegate audit)")
        ts, outcome, name, extra = event
        if outcome not in MARKABLE:
            raise AuditError(f"decision {event_id} is a {outcome}; only a grant or a deny can be marked wrong")
        if outcome == "deny" and actual is None:
            try:
                actual = json.loads(extra or "{}").get("best_name")
            except ValueError:
                actual = None
            if actual is None:
                raise AuditError(f"decision {event_id} denied someone unnamed; say who it was with --was NAME")
        if outcome == "grant" and actual is not None and actual == name:
            raise AuditError(f"decision {event_id} granted {name}; marking it wrong with --was {actual} says "
                             "it was right")
        held = conn.execute("SELECT model_id, dim, embedding, key_id FROM held_embeddings WHERE event_id = ?",
                            (int(event_id),)).fetchone()
        kept = conn.execute("SELECT model_id, dim, embedding, key_id FROM feedback WHERE event_id = ?",
                            (int(event_id),)).fetchone()
        source = held or kept
        if source is None:
            raise AuditError(f"decision {event_id} has no embedding any more (only the newest {HELD_EMBEDDINGS} "
                             "decisions keep one); mark wrong decisions soon after they happen")
        model_id, dim, blob, key_id = source
        vector = _open_decision(cipher, int(event_id), model_id, dim, blob, key_id)  # readable before it is kept
        if key_id is None and cipher is not None:  # a clear-text mark of before v4: sealed now
            from .gallery.crypto import decision_aad

            blob, key_id = cipher.seal(vector.astype("<f4"), decision_aad(event_id, model_id, dim)), cipher.key_id
        conn.execute("INSERT OR REPLACE INTO feedback (event_id, ts, outcome, name, actual, model_id, dim, embedding,"
                     " marked_at, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (int(event_id), ts, outcome, name, actual, model_id, dim, blob, float(wallclock()), key_id))
    logger.info("decision %d (%s %s) marked wrong; it was %s", event_id, outcome, name, actual or "a stranger")
    return Feedback(int(event_id), outcome, name, actual, model_id, vector)


def clear_mark(log: AuditLog, event_id: int) -> bool:
    """Take back a mark; returns whether there was one."""
    with log._lock:
        return log._connection().execute("DELETE FROM feedback WHERE event_id = ?", (int(event_id),)).rowcount > 0


def marked_feedback(log: AuditLog, model_id: str | None = None, *, cipher: Any) -> list[Feedback]:
    """Every decision marked wrong (of ``model_id`` when given), oldest first, opened with ``cipher``."""
    with log._lock:
        rows = log._connection().execute("SELECT event_id, outcome, name, actual, model_id, dim, embedding, key_id "
                                         "FROM feedback ORDER BY event_id").fetchall()
    return [Feedback(int(r[0]), r[1], r[2], r[3], r[4], _open_decision(cipher, int(r[0]), r[4], r[5], r[6], r[7]))
            for r in rows if model_id is None or r[4] == model_id]
