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
(``outcome`` "door_open" / "door_closed"). Growth is bounded by age
(``retention_days``) and by count (``max_events``), pruned on open and every
``prune_every`` writes.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .errors import AuditError, AuditSchemaError, GalleryError
from .types import AUDITED_OUTCOMES, Decision, DoorEvent, DoorState, Outcome

__all__ = ["AuditLog"]

logger = logging.getLogger("facegate.audit")

_COLUMNS = (
    "id", "ts", "outcome", "name", "distance", "threshold",
    "model_id", "reason", "frames_used", "latency_ms", "extra",
)

_MAX_TEXT = 500  # longest string kept from Decision.extra


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
    :param max_events: keep at most this many newest events; None = no cap.
    :param prune_every: prune after this many writes (and on open).
    :param wallclock: "now" for age pruning; injected by tests.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        retention_days: float | None = 90,
        max_events: int | None = 100_000,
        *,
        prune_every: int = 1000,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        if retention_days is not None and not retention_days > 0:
            raise ValueError(f"retention_days must be > 0 or None, got {retention_days!r}")
        if max_events is not None and (isinstance(max_events, bool) or int(max_events) != max_events or max_events < 1):
            raise ValueError(f"max_events must be an integer >= 1 or None, got {max_events!r}")
        if prune_every < 1:
            raise ValueError(f"prune_every must be >= 1, got {prune_every!r}")
        self.path = str(path)
        self.retention_days = retention_days
        self.max_events = None if max_events is None else int(max_events)
        self.prune_every = int(prune_every)
        self._wallclock = wallclock
        self._lock = threading.Lock()
        self._writes = 0
        self._conn: sqlite3.Connection | None = None
        from .gallery.schema import connect

        try:
            conn = connect(self.path)
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

    # -- lifecycle ---------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        """Close the connection; safe to call twice."""
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
        decision = event
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
            due = self._writes % self.prune_every == 0
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
            if self.max_events is not None:
                # Newest by insertion order (id), not ts: the wall clock can jump.
                removed += conn.execute(
                    "DELETE FROM events WHERE id <= "
                    "(SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (self.max_events,),
                ).rowcount
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
