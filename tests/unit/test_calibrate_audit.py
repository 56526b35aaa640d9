"""Field feedback: recent decisions listed, wrong ones marked, their embeddings kept for calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facegate.edge.audit import (
    AuditLog,
    clear_mark,
    hold_embedding,
    list_decisions,
    mark_wrong,
    marked_feedback,
)
from facegate.edge.errors import AuditError, GalleryTampered
from facegate.edge.gallery.crypto import TemplateCipher
from facegate.edge.gallery.keys import GalleryKey
from facegate.edge.types import Decision, Embedding

NOW = 1_700_000_000.0
MODEL = "fake-000000000000"


def decision(outcome="grant", name="alice", **kw) -> Decision:
    base = dict(timestamp=NOW, outcome=outcome, name=name, distance=0.6, threshold=0.9, model_id=MODEL,
                reason="2 of last 3", frames_used=3, extra={"best_name": name or "bob"})
    base.update(kw)
    return Decision(**base)


def vec(i: int) -> np.ndarray:
    return np.eye(8, dtype=np.float32)[i]


#: The gallery's template key, which seals the decision embeddings the audit keeps.
KEY = TemplateCipher(GalleryKey.ephemeral())


def test_marking_round_trip(tmp_path):
    path = tmp_path / "g.db"
    with AuditLog(path, wallclock=lambda: NOW) as log:
        grant = log.record(decision("grant", "alice"))
        hold_embedding(log, grant, vec(1), MODEL, KEY)
        deny = log.record(decision("deny", None, extra={"best_name": "bob"}))
        hold_embedding(log, deny, vec(2), MODEL, KEY)
        log.record(decision("lockout", None))
        listed = list_decisions(log)
        assert [(e.id, e.outcome, e.markable, e.marked_wrong) for e in listed] == [
            (deny, "deny", True, False), (grant, "grant", True, False)]
        assert listed[0].best_name is None  # a refusal names nobody (privacy)

        fb = mark_wrong(log, grant, cipher=KEY)  # a stranger let in as alice
        assert (fb.outcome, fb.name, fb.actual) == ("grant", "alice", None)
        assert np.array_equal(fb.vector, vec(1))
        with pytest.raises(AuditError, match="--was"):
            mark_wrong(log, deny, cipher=KEY)  # the refusal did not record who was nearest: the user says who it was
        fb2 = mark_wrong(log, deny, actual="bob", cipher=KEY)
        assert fb2.actual == "bob"
    # marks survive reopening, and only marked decisions come back for calibration
    with AuditLog(path, wallclock=lambda: NOW) as log:
        got = marked_feedback(log, MODEL, cipher=KEY)
        assert [(f.event_id, f.outcome, f.actual) for f in got] == [(grant, "grant", None), (deny, "deny", "bob")]
        assert np.array_equal(got[1].vector, vec(2))
        assert marked_feedback(log, "another-model", cipher=KEY) == []
        assert [e.marked_wrong for e in list_decisions(log)] == [True, True]
        assert clear_mark(log, grant) and not clear_mark(log, grant)
        assert [f.event_id for f in marked_feedback(log, cipher=KEY)] == [deny]


def test_only_recent_decisions_keep_an_embedding(tmp_path):
    with AuditLog(tmp_path / "g.db") as log:
        ids = [log.record(decision()) for _ in range(4)]
        for i in ids:
            hold_embedding(log, i, vec(0), MODEL, KEY, keep=2)
        assert [e.markable for e in list_decisions(log)] == [True, True, False, False]
        with pytest.raises(AuditError, match="no embedding any more"):
            mark_wrong(log, ids[0], cipher=KEY)
        mark_wrong(log, ids[3], cipher=KEY)


def test_what_cannot_be_marked_is_refused_with_a_reason(tmp_path):
    with AuditLog(tmp_path / "g.db") as log:
        lockout = log.record(decision("lockout", None))
        grant = log.record(decision("grant", "alice"))
        hold_embedding(log, grant, vec(0), MODEL, KEY)
        deny = log.record(decision("deny", None, extra={}))
        hold_embedding(log, deny, vec(0), MODEL, KEY)
        with pytest.raises(AuditError, match="no decision 99"):
            mark_wrong(log, 99, cipher=KEY)
        with pytest.raises(AuditError, match="only a grant or a deny"):
            mark_wrong(log, lockout, cipher=KEY)
        with pytest.raises(AuditError, match="says it was right"):
            mark_wrong(log, grant, "alice", cipher=KEY)
        with pytest.raises(AuditError, match="--was NAME"):
            mark_wrong(log, deny, cipher=KEY)
        assert mark_wrong(log, deny, "carol", cipher=KEY).actual == "carol"


def test_a_log_with_nothing_held_lists_and_returns_nothing_marked(tmp_path):
    with AuditLog(tmp_path / "g.db") as log:
        log.record(decision())
        assert [e.markable for e in list_decisions(log)] == [False]
        assert marked_feedback(log, cipher=KEY) == []


def test_the_daemon_holds_the_embedding_of_each_audited_decision(tmp_path, tmp_gallery, fake_detector,
                                                                 fake_embedder, file_camera):
    from tests.unit.test_daemon_loop import run

    tmp_gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    run(tmp_path, [None, 1, 1, 1, None, 3, 3, 3, 3, None], tmp_gallery, fake_detector, fake_embedder, file_camera)
    with AuditLog(tmp_path / "g.db") as log:
        entries = list_decisions(log)
        assert {e.outcome for e in entries} == {"grant", "deny"} and all(e.markable for e in entries)
        deny = next(e for e in entries if e.outcome == "deny")
        fb = mark_wrong(log, deny.id, "alice", cipher=tmp_gallery.template_cipher())
        assert np.array_equal(fb.vector, fake_embedder.vector_for(3))  # the face the door saw


def test_audit_cli_lists_and_marks(tmp_path, capsys):
    from facegate.edge.cli import main

    from facegate.edge.gallery import Gallery

    db = tmp_path / "g.db"
    with Gallery(db) as gallery, AuditLog(db) as log:
        gallery.enroll("alice", [Embedding(vec(0), MODEL)])  # the gallery's key (gallery.key beside it)
        grant = log.record(decision("grant", "alice"))
        assert hold_embedding(log, grant, vec(1), MODEL, gallery.template_cipher())
    assert main(["audit", "--gallery", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"{grant:6d}" in out and "grant" in out and "alice" in out
    assert main(["audit", "--gallery", str(db), "mark", str(grant), "--wrong", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"id": grant, "outcome": "grant", "name": "alice",
                                                   "actual": None, "marked": "wrong"}
    assert main(["audit", "--gallery", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["marked_wrong"] is True
    assert main(["audit", "--gallery", str(db), "mark", "12345", "--wrong"]) == 2
    assert "no decision 12345" in capsys.readouterr().err
    assert main(["audit", "--gallery", str(tmp_path / "none.db")]) == 2


def _raw(path, table: str) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT event_id, embedding, key_id FROM {table}").fetchall()


def test_a_kept_embedding_is_sealed_in_the_file_and_bound_to_its_decision(tmp_path):
    path = tmp_path / "g.db"
    with AuditLog(path, wallclock=lambda: NOW) as log:
        a, b = log.record(decision()), log.record(decision())
        hold_embedding(log, a, vec(1), MODEL, KEY)
        hold_embedding(log, b, vec(2), MODEL, KEY)
        mark_wrong(log, a, cipher=KEY)
    for table in ("held_embeddings", "feedback"):
        for _, blob, key_id in _raw(path, table):
            assert key_id == KEY.key_id
            assert vec(1).tobytes() not in blob and vec(2).tobytes() not in blob  # no clear-text vector
    import sqlite3

    with sqlite3.connect(path) as conn:  # move b's sealed vector onto a: it no longer opens
        conn.execute("UPDATE feedback SET embedding = (SELECT embedding FROM held_embeddings WHERE event_id = ?)",
                     (b,))
    with AuditLog(path, wallclock=lambda: NOW) as log:
        with pytest.raises(GalleryTampered, match=f"decision {a}"):
            marked_feedback(log, cipher=KEY)
        with pytest.raises(AuditError, match="sealed with key"):
            mark_wrong(log, b, cipher=TemplateCipher(GalleryKey.ephemeral()))  # another door's key
        with pytest.raises(AuditError, match="no key"):
            mark_wrong(log, b, cipher=None)


def test_without_a_key_no_embedding_is_held(tmp_path):
    with AuditLog(tmp_path / "g.db") as log:
        event = log.record(decision())
        assert hold_embedding(log, event, vec(1), MODEL, None) is False
        assert [e.markable for e in list_decisions(log)] == [False]
    assert _raw(tmp_path / "g.db", "held_embeddings") == []


def test_clear_text_embeddings_of_an_older_file_are_dropped_or_sealed_when_marked(tmp_path):
    """Before schema v4 both tables were made on first use and held vectors in clear text."""
    import sqlite3

    from facegate.edge.gallery.schema import encode_embedding

    path = tmp_path / "g.db"
    with AuditLog(path, wallclock=lambda: NOW) as log:
        held, marked = log.record(decision()), log.record(decision())
    with sqlite3.connect(path) as conn:  # what a v3 file looked like
        conn.execute("DROP TABLE held_embeddings")
        conn.execute("DROP TABLE feedback")
        conn.execute("CREATE TABLE held_embeddings (event_id INTEGER PRIMARY KEY REFERENCES events(id) "
                     "ON DELETE CASCADE, model_id TEXT NOT NULL, dim INTEGER NOT NULL, embedding BLOB NOT NULL)")
        conn.execute("CREATE TABLE feedback (event_id INTEGER PRIMARY KEY, ts REAL NOT NULL, outcome TEXT NOT NULL,"
                     " name TEXT, actual TEXT, model_id TEXT NOT NULL, dim INTEGER NOT NULL, embedding BLOB NOT NULL,"
                     " marked_at REAL NOT NULL)")
        for event, i in ((held, 1), (marked, 2)):
            cols = encode_embedding(vec(i))
            conn.execute("INSERT INTO held_embeddings VALUES (?, ?, ?, ?)", (event, MODEL, cols["dim"],
                                                                             cols["embedding"]))
        cols = encode_embedding(vec(2))
        conn.execute("INSERT INTO feedback VALUES (?, ?, 'grant', 'alice', NULL, ?, ?, ?, ?)",
                     (marked, NOW, MODEL, cols["dim"], cols["embedding"], NOW))
        conn.execute("PRAGMA user_version = 3")
    with AuditLog(path, wallclock=lambda: NOW) as log:  # migrated to v4 on open
        assert _raw(path, "held_embeddings") == []  # held for marking only: dropped
        assert np.array_equal(marked_feedback(log, cipher=KEY)[0].vector, vec(2))  # a mark is kept
        mark_wrong(log, marked, cipher=KEY)  # marked again: now sealed
    [(_, blob, key_id)] = _raw(path, "feedback")
    assert key_id == KEY.key_id and vec(2).tobytes() not in blob
