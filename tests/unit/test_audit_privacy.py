"""The audit trail's privacy rules: grants never pushed out, refusals name nobody,
retention on time, face crops only when asked for, private and pruned while running."""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest

from facegate.edge.audit import AuditLog
from facegate.edge.types import Decision

DAY = 86400.0
NOW = 1_700_000_000.0


def decision(outcome: str, name: str | None = None, ts: float = NOW, **kw) -> Decision:
    return Decision(timestamp=ts, outcome=outcome, name=name, distance=0.5, threshold=0.9, model_id="m",
                    reason=kw.pop("reason", ""), frames_used=3, **kw)


def test_a_flood_of_denials_never_pushes_grants_out():
    with AuditLog(":memory:", max_events=50, max_grants=1000, prune_every=1, prune_interval_s=None,
                  wallclock=lambda: NOW) as log:
        for i in range(5):
            log.record(decision("grant", "alice", ts=NOW + i, reason=f"grant {i}"))
        for i in range(2000):
            log.record(decision("deny", ts=NOW + 10 + i))
        kept = log.recent(limit=10_000)
        assert [d.reason for d in kept if d.outcome == "grant"] == [f"grant {i}" for i in reversed(range(5))]
        assert sum(d.outcome == "deny" for d in kept) == 50


def test_grants_have_their_own_quota():
    with AuditLog(":memory:", max_events=10, max_grants=3, prune_every=1, prune_interval_s=None,
                  wallclock=lambda: NOW) as log:
        for i in range(6):
            log.record(decision("grant", "alice", ts=NOW + i, reason=f"g{i}"))
        log.record(decision("lockout", ts=NOW + 7))
        assert [d.reason for d in log.recent() if d.outcome == "grant"] == ["g5", "g4", "g3"]
        assert [d.outcome for d in log.recent()].count("lockout") == 1


def test_a_refusal_never_names_the_nearest_enrolled_person(caplog):
    caplog.set_level("DEBUG", logger="facegate.audit")
    with AuditLog(":memory:", prune_interval_s=None) as log:
        log.record(decision("deny", name="Alice", reason="3 of last 3 rejected; nearest Alice at 1.020 "
                            "(threshold 0.900)", extra={"best_name": "Alice", "runner_up": "Bob", "faces": 1}))
        log.record(decision("lockout", reason="too many denials; nearest Bob at 1.1", extra={"best_name": "Bob"}))
        log.record(decision("grant", name="Carol", reason="2 of last 3 matched Carol", extra={"best_name": "Carol"}))
        grant, lockout, deny = log.recent()
    for d in (deny, lockout):
        assert d.name is None and "best_name" not in d.extra and "runner_up" not in d.extra
        assert "Alice" not in d.reason and "Bob" not in d.reason and "an enrolled person" in d.reason
    assert deny.extra == {"faces": 1}
    assert deny.reason.startswith("3 of last 3 rejected; nearest an enrolled person at 1.020")
    assert grant.name == "Carol" and grant.extra["best_name"] == "Carol"  # a grant says who came in
    refusals = [r.getMessage() for r in caplog.records if not r.getMessage().startswith("grant")]
    assert refusals and not any("Alice" in m or "Bob" in m for m in refusals)


def test_a_one_letter_name_is_scrubbed_as_a_word_not_as_a_letter():
    with AuditLog(":memory:", prune_interval_s=None) as log:
        log.record(decision("deny", reason="rejected; nearest E at 1.1 (threshold 0.9)", extra={"best_name": "E"}))
        (d,) = log.recent()
    assert d.reason == "rejected; nearest an enrolled person at 1.1 (threshold 0.9)"


def test_retention_is_enforced_on_time_without_any_write(tmp_path):
    clock = {"now": NOW}
    with AuditLog(tmp_path / "a.db", retention_days=30, prune_every=10**6, prune_interval_s=0.05,
                  wallclock=lambda: clock["now"]) as log:
        log.record(decision("grant", "alice", ts=NOW))
        assert log.count() == 1
        clock["now"] = NOW + 31 * DAY  # a month passes with nobody at the door
        deadline = time.monotonic() + 5
        while log.count() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.count() == 0


def test_retention_is_enforced_on_the_first_write_after_the_interval():
    clock = {"now": NOW}
    with AuditLog(":memory:", retention_days=30, prune_every=10**6, prune_interval_s=0.01,
                  wallclock=lambda: clock["now"]) as log:
        log._stop.set()  # no timer thread: the write itself must notice the time
        log.record(decision("deny", ts=NOW))
        clock["now"] = NOW + 31 * DAY
        time.sleep(0.02)
        log.record(decision("deny", ts=NOW + 31 * DAY))
        assert log.count() == 1


def test_no_face_is_kept_unless_asked(tmp_path):
    with AuditLog(tmp_path / "a.db", prune_interval_s=None) as log:
        event = log.record(decision("deny"))
        assert log.save_face(event, "deny", np.zeros((112, 112, 3), np.uint8)) is None
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("a.db")) == []


def test_face_crops_are_private_and_pruned_with_their_events_while_running(tmp_path):
    faces = tmp_path / "faces"
    crop = np.full((112, 112, 3), 128, np.uint8)
    old = os.umask(0)
    try:
        log = AuditLog(tmp_path / "a.db", max_events=3, prune_every=1, prune_interval_s=None, faces_dir=faces,
                       wallclock=lambda: NOW)
    finally:
        os.umask(old)
    with log:
        paths = []
        for i in range(5):
            event = log.record(decision("deny", ts=NOW + i))
            paths.append(log.save_face(event, "deny", crop))
            assert stat.S_IMODE(os.stat(paths[-1]).st_mode) == 0o600
        # after each write the quota pruned the oldest event, and its crop with it on the next prune
        log.prune()
        assert sorted(p.name for p in faces.iterdir()) == sorted(p.name for p in paths[-3:])
    assert stat.S_IMODE(os.stat(faces).st_mode) == 0o700


def test_face_crops_past_retention_are_pruned_on_time(tmp_path):
    faces, clock = tmp_path / "faces", {"now": NOW}
    with AuditLog(tmp_path / "a.db", retention_days=1, prune_interval_s=0.05, faces_dir=faces,
                  wallclock=lambda: clock["now"]) as log:
        event = log.record(decision("grant", "alice", ts=time.time()))
        path = log.save_face(event, "grant", np.zeros((112, 112, 3), np.uint8))
        os.utime(path, (NOW - 2 * DAY, NOW - 2 * DAY))  # an old crop whose event is still kept
        deadline = time.monotonic() + 5
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not path.exists() and log.count() == 1


@pytest.mark.parametrize("save", [False, True])
def test_the_daemon_keeps_face_crops_only_when_configured(tmp_path, save, fake_detector, fake_embedder,
                                                          file_camera):
    from dataclasses import replace

    from facegate.edge.align import NO_QUALITY_GATE
    from facegate.edge.config import Config
    from facegate.edge.gallery import Gallery
    from facegate.edge.lock import LogLock
    from facegate.edge.pipeline import FacePipeline
    from facegate.edge.service import DoorDaemon, NullNotifier

    base = Config.default()
    cfg = replace(base, lock=replace(base.lock, type="log", unlock_seconds=0.2), quality=NO_QUALITY_GATE,
                  storage=replace(base.storage, gallery=str(tmp_path / "g.db"), save_face_images=save),
                  daemon=replace(base.daemon, watchdog=False),
                  policy=replace(base.policy, min_interval_seconds=0.0))  # the replay runs at 50 fps
    stranger = np.random.default_rng(3).integers(60, 200, (480, 640, 3), dtype=np.uint8)
    stranger[..., 0] = 120  # the fake embedder's person 2: not enrolled
    lock = LogLock(unlock_seconds=0.2)
    with Gallery(cfg.storage.gallery) as gallery, DoorDaemon(
            cfg, source=file_camera([stranger] * 4), lock=lock, gallery=gallery,
            pipeline=FacePipeline(fake_detector, fake_embedder, cfg.quality), notifier=NullNotifier()) as daemon:
        stats = daemon.run()
        assert stats.denies >= 1
        events = daemon.audit.recent()
    lock.close()
    faces = tmp_path / "faces"
    assert events and all(e.name is None for e in events)
    if not save:
        assert not faces.exists()
    else:
        crops = sorted(faces.iterdir())
        assert len(crops) == len(events) and all(stat.S_IMODE(os.stat(c).st_mode) == 0o600 for c in crops)


def test_two_residents_in_turn_are_refused_without_naming_either(caplog):
    """Alice and Colin taking turns in front of the door: the refusal says how many, never who."""
    from facegate.edge.policy import DecisionPolicy, PolicyConfig
    from facegate.edge.types import Match, Quality

    good = Quality(face_px=120.0, sharpness=200.0, brightness=120.0, yaw=0.0, pitch=0.0)
    clock = [1000.0]
    policy = DecisionPolicy(PolicyConfig(min_interval_seconds=0.0, cooldown_seconds=0), clock=lambda: clock[0],
                            wallclock=lambda: NOW + clock[0])
    caplog.set_level("INFO", logger="facegate.audit")
    with AuditLog(":memory:", prune_interval_s=None) as log:
        for who in ["alice", "colin"] * 6:
            clock[0] += 0.1
            d = policy.observe(Match(name=who, distance=0.5, threshold=0.9, model_id="m", best_name=who,
                                     candidates=3), good, 1)
            if d.outcome == "deny":
                log.record(d)
        refusals = log.recent()
    assert refusals and all("conflicting identities" in d.reason for d in refusals)
    assert all("enrolled people" in d.reason for d in refusals)
    told = " ".join(d.reason for d in refusals) + " ".join(r.getMessage() for r in caplog.records)
    assert "alice" not in told and "colin" not in told
