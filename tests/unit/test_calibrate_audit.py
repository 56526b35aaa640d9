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
from facegate.edge.errors import AuditError
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


def test_marking_round_trip(tmp_path):
    path = tmp_path / "g.db"
    with AuditLog(path, wallclock=lambda: NOW) as log:
        grant = log.record(decision("grant", "alice"))
        hold_embedding(log, grant, vec(1), MODEL)
        deny = log.record(decision("deny", None, extra={"best_name": "bob"}))
        hold_embedding(log, deny, vec(2), MODEL)
        log.record(decision("lockout", None))
        listed = list_decisions(log)
        assert [(e.id, e.outcome, e.markable, e.marked_wrong) for e in listed] == [
            (deny, "deny", True, False), (grant, "grant", True, False)]
        assert listed[0].best_name is None  # a refusal names nobody (privacy)

        fb = mark_wrong(log, grant)  # a stranger let in as alice
        assert (fb.outcome, fb.name, fb.actual) == ("grant", "alice", None)
        assert np.array_equal(fb.vector, vec(1))
        with pytest.raises(AuditError, match="--was"):
            mark_wrong(log, deny)  # the refusal did not record who was nearest: the user says who it was
        fb2 = mark_wrong(log, deny, actual="bob")
        assert fb2.actual == "bob"
    # marks survive reopening, and only marked decisions come back for calibration
    with AuditLog(path, wallclock=lambda: NOW) as log:
        got = marked_feedback(log, MODEL)
        assert [(f.event_id, f.outcome, f.actual) for f in got] == [(grant, "grant", None), (deny, "deny", "bob")]
        assert np.array_equal(got[1].vector, vec(2))
        assert marked_feedback(log, "another-model") == []
        assert [e.marked_wrong for e in list_decisions(log)] == [True, True]
        assert clear_mark(log, grant) and not clear_mark(log, grant)
        assert [f.event_id for f in marked_feedback(log)] == [deny]


def test_only_recent_decisions_keep_an_embedding(tmp_path):
    with AuditLog(tmp_path / "g.db") as log:
        ids = [log.record(decision()) for _ in range(4)]
        for i in ids:
            hold_embedding(log, i, vec(0), MODEL, keep=2)
        assert [e.markable for e in list_decisions(log)] == [True, True, False, False]
        with pytest.raises(AuditError, match="no embedding any more"):
            mark_wrong(log, ids[0])
        mark_wrong(log, ids[3])


def test_what_cannot_be_marked_is_refused_with_a_reason(tmp_path):
    with AuditLog(tmp_path / "g.db") as log:
        lockout = log.record(decision("lockout", None))
        grant = log.record(decision("grant", "alice"))
        hold_embedding(log, grant, vec(0), MODEL)
        deny = log.record(decision("deny", None, extra={}))
        hold_embedding(log, deny, vec(0), MODEL)
        with pytest.raises(AuditError, match="no decision 99"):
            mark_wrong(log, 99)
        with pytest.raises(AuditError, match="only a grant or a deny"):
            mark_wrong(log, lockout)
        with pytest.raises(AuditError, match="says it was right"):
            mark_wrong(log, grant, "alice")
        with pytest.raises(AuditError, match="--was NAME"):
            mark_wrong(log, deny)
        assert mark_wrong(log, deny, "carol").actual == "carol"


def test_a_log_without_feedback_tables_lists_and_returns_nothing_marked(tmp_path):
    with AuditLog(tmp_path / "g.db") as log:
        log.record(decision())
        assert [e.markable for e in list_decisions(log)] == [False]
        assert marked_feedback(log) == []


def test_the_daemon_holds_the_embedding_of_each_audited_decision(tmp_path, tmp_gallery, fake_detector,
                                                                 fake_embedder, file_camera):
    from tests.unit.test_daemon_loop import run

    tmp_gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    run(tmp_path, [None, 1, 1, 1, None, 3, 3, 3, 3, None], tmp_gallery, fake_detector, fake_embedder, file_camera)
    with AuditLog(tmp_path / "g.db") as log:
        entries = list_decisions(log)
        assert {e.outcome for e in entries} == {"grant", "deny"} and all(e.markable for e in entries)
        deny = next(e for e in entries if e.outcome == "deny")
        fb = mark_wrong(log, deny.id, "alice")
        assert np.array_equal(fb.vector, fake_embedder.vector_for(3))  # the face the door saw


def test_audit_cli_lists_and_marks(tmp_path, capsys):
    from facegate.edge.cli import main

    db = tmp_path / "g.db"
    with AuditLog(db) as log:
        grant = log.record(decision("grant", "alice"))
        hold_embedding(log, grant, vec(1), MODEL)
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
