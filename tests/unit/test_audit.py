"""AuditLog: round trip, retention by count and age, persistence, logging."""

from __future__ import annotations

import logging
import sqlite3

import numpy as np
import pytest

from facegate.edge.audit import AuditLog
from facegate.edge.errors import AuditError, AuditSchemaError
from facegate.edge.types import Decision

DAY = 86400.0
NOW = 1_700_000_000.0


def open_log(path, **kwargs) -> AuditLog:
    """The log under test, with "now" pinned to NOW unless a test moves it."""
    kwargs.setdefault("wallclock", lambda: NOW)
    return AuditLog(path, **kwargs)


def decision(outcome: str = "grant", name: str | None = "alice", ts: float = NOW, **kw) -> Decision:
    base = dict(
        timestamp=ts, outcome=outcome, name=name, distance=0.61, threshold=0.9,
        model_id="arcface-r50@1", reason="2 of last 3", frames_used=3, latency_ms=41.5,
    )
    base.update(kw)
    return Decision(**base)


def test_round_trip_newest_first():
    with open_log(":memory:") as log:
        d1 = decision(extra={"faces": 1, "best_name": "alice"})
        d2 = decision("deny", None, ts=NOW + 1, distance=1.3, reason="2 of last 3 rejected")
        id1, id2 = log.record(d1), log.record(d2)
        assert id2 > id1
        assert log.recent() == [d2, d1]
        assert log.recent(limit=1) == [d2]
        assert log.count() == 2


def test_no_images_in_extra():
    with open_log(":memory:") as log:
        face = np.zeros((112, 112, 3), np.uint8)
        log.record(decision(extra={"crop": face, "score": np.float32(0.5), "raw": b"\xff" * 100}))
        (got,) = log.recent()
        assert got.extra["score"] == pytest.approx(0.5)
        assert got.extra["crop"] == "<array shape=(112, 112, 3) omitted>"
        assert got.extra["raw"] == "<100 bytes omitted>"


def test_persists_across_reopen_in_wal(tmp_path):
    path = tmp_path / "facegate.db"
    with open_log(path) as log:
        log.record(decision())
    with open_log(path) as log:
        assert [d.name for d in log.recent()] == ["alice"]
        log.record(decision("lockout", None, ts=NOW + 5, distance=None, threshold=None))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with open_log(path) as log:
        assert [d.outcome for d in log.recent()] == ["lockout", "grant"]


def test_shares_the_gallery_file(tmp_path):
    import numpy as np

    from facegate.edge.gallery import Gallery
    from facegate.edge.types import Embedding

    path = tmp_path / "facegate.db"
    vec = np.eye(4, dtype=np.float32)[0]
    with Gallery(path) as g:
        g.enroll("alice", [Embedding(vec, "m")])
    with open_log(path) as log:
        log.record(decision())
    with Gallery(path) as g:
        assert [p.name for p in g.people()] == ["alice"]


def test_opening_the_audit_log_first_leaves_a_file_the_gallery_accepts(tmp_path):
    """The events table is one of the gallery's migrations, so the order of opening does not matter."""
    import numpy as np

    from facegate.edge.gallery import Gallery
    from facegate.edge.types import Embedding

    path = tmp_path / "facegate.db"
    with open_log(path) as log:
        log.record(decision())
    with Gallery(path) as g:
        g.enroll("alice", [Embedding(np.eye(4, dtype=np.float32)[0], "m")])
        assert len(g) == 1
    with Gallery(path, readonly=True) as g, open_log(path) as log:
        assert len(g) == 1 and [d.outcome for d in log.recent()] == ["grant"]


def test_door_events_are_their_own_record(tmp_path):
    from facegate.edge.types import DoorEvent, DoorState

    with open_log(tmp_path / "f.db") as log:
        log.record(DoorEvent(NOW, DoorState.OPEN))
        log.record(decision(ts=NOW + 1))
        newest, door = log.recent()
    assert door == DoorEvent(NOW, DoorState.OPEN) and door.outcome == "door_open"
    assert newest.outcome == "grant"


def test_foreign_events_table_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
    with pytest.raises(AuditSchemaError, match="events"):
        open_log(path)


def test_retention_by_count_every_n_writes():
    """Grants by their own quota here (max_events caps everything else: test_audit_privacy)."""
    with open_log(":memory:", max_grants=5, prune_every=1) as log:
        for i in range(12):
            log.record(decision(name=f"p{i}", ts=NOW + i))
        assert log.count() == 5
        assert [d.name for d in log.recent()] == ["p11", "p10", "p9", "p8", "p7"]
    with open_log(":memory:", max_grants=5, prune_every=4) as log:
        for i in range(7):
            log.record(decision(name=f"p{i}", ts=NOW + i))
        assert log.count() == 7  # not due yet
        log.record(decision(name="p7", ts=NOW + 7))
        assert log.count() == 5


def test_retention_by_count_on_open(tmp_path):
    path = tmp_path / "a.db"
    with open_log(path, max_grants=None) as log:
        for i in range(20):
            log.record(decision(name=f"p{i}", ts=NOW + i))
    with open_log(path, max_grants=5) as log:
        assert [d.name for d in log.recent()] == ["p19", "p18", "p17", "p16", "p15"]


def test_retention_by_age(tmp_path):
    path = tmp_path / "a.db"
    clock = {"now": NOW}
    with open_log(path, retention_days=90, prune_every=2, wallclock=lambda: clock["now"]) as log:
        log.record(decision(name="old", ts=NOW - 100 * DAY))
        log.record(decision(name="mid", ts=NOW - 10 * DAY))  # 2nd write: prune -> "old" gone
        assert [d.name for d in log.recent()] == ["mid"]
        log.record(decision(name="new", ts=NOW))
    clock["now"] = NOW + 85 * DAY  # "mid" is now 95 days old: pruned on open
    with open_log(path, retention_days=90, wallclock=lambda: clock["now"]) as log:
        assert [d.name for d in log.recent()] == ["new"]
        clock["now"] = NOW + 91 * DAY
        assert log.prune() == 1
        assert log.count() == 0


def test_logging_levels(caplog):
    caplog.set_level(logging.DEBUG, logger="facegate.audit")
    with open_log(":memory:") as log:
        for outcome in ("grant", "deny", "lockout", "skip", "pending", "idle", "cooldown"):
            log.record(decision(outcome))
    levels = {r.getMessage().split()[0]: r.levelno for r in caplog.records if r.name == "facegate.audit"}
    assert levels == {
        "grant": logging.INFO, "deny": logging.INFO, "lockout": logging.INFO,
        "skip": logging.DEBUG, "pending": logging.DEBUG, "idle": logging.DEBUG, "cooldown": logging.DEBUG,
    }
    grant = next(r for r in caplog.records if r.getMessage().startswith("grant"))
    assert "alice" in grant.getMessage() and "0.6100" in grant.getMessage()


def test_close_is_idempotent_and_use_after_close_raises():
    log = open_log(":memory:")
    log.close()
    log.close()
    assert log.closed and "closed" in repr(log)
    with pytest.raises(AuditError, match="closed"):
        log.record(decision())
    with pytest.raises(AuditError, match="closed"):
        log.recent()


@pytest.mark.parametrize("kwargs", [{"retention_days": 0}, {"max_events": 0}, {"max_grants": 0}, {"prune_every": 0},
                                    {"prune_interval_s": 0}])
def test_bad_limits(kwargs):
    with pytest.raises(ValueError):
        open_log(":memory:", **kwargs)
