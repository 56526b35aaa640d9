"""The daemon loop with fake stages: grants, denials, audit and the lock, no model needed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from facegate.edge.align import NO_QUALITY_GATE
from facegate.edge.audit import AuditLog
from facegate.edge.config import Config
from facegate.edge.lock import LogLock
from facegate.edge.pipeline import FacePipeline
from facegate.edge.service import DoorDaemon, NullNotifier
from facegate.edge.types import Embedding


def frame(who: int | None) -> np.ndarray:
    """A textured frame whose blue level says who is in it (None: an all-black, empty doorway)."""
    if who is None:
        return np.zeros((480, 640, 3), np.uint8)
    img = np.random.default_rng(who).integers(60, 200, (480, 640, 3), dtype=np.uint8)
    img[..., 0] = 40 * (who + 1)
    return img


def config(tmp_path) -> Config:
    base = Config.default()
    # liveness off: the fake detector's landmarks never move, as a photo's would not (tests/unit/test_liveness*)
    return replace(base, lock=replace(base.lock, type="log", unlock_seconds=0.2),
                   policy=replace(base.policy, min_interval_seconds=0.0),  # the replay runs at 50 fps
                   storage=replace(base.storage, gallery=str(tmp_path / "g.db")),
                   daemon=replace(base.daemon, watchdog=False), quality=NO_QUALITY_GATE,
                   liveness=replace(base.liveness, enabled=False))


def run(tmp_path, frames, gallery, fake_detector, fake_embedder, file_camera):
    cfg = config(tmp_path)
    lock = LogLock(unlock_seconds=0.2)
    with AuditLog(cfg.storage.gallery) as audit, DoorDaemon(
            cfg, source=file_camera([frame(w) for w in frames]), lock=lock, gallery=gallery, audit=audit,
            pipeline=FacePipeline(fake_detector, fake_embedder, cfg.quality), notifier=NullNotifier()) as daemon:
        stats = daemon.run()
        events = audit.recent()
    lock.close()
    return stats, events, lock


def test_an_enrolled_face_is_granted_once_and_audited(tmp_path, tmp_gallery, fake_detector, fake_embedder,
                                                      file_camera):
    tmp_gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    stats, events, lock = run(tmp_path, [None, 1, 1, 1, 1, None], tmp_gallery, fake_detector, fake_embedder,
                              file_camera)
    assert stats.grants == 1 and stats.denies == 0  # (the grabber may drop a frame: newest only)
    assert [e.outcome for e in events] == ["grant"] and events[0].name == "alice"
    assert [s for _, s in lock.history][:2] == ["locked", "unlocked"] and lock.is_locked
    # one crop per face, cut as the embedder asked
    assert fake_embedder.seen and all(c.image.shape == (112, 112, 3) for c in fake_embedder.seen)


def test_a_stranger_is_denied_and_the_door_stays_locked(tmp_path, tmp_gallery, fake_detector, fake_embedder,
                                                        file_camera):
    tmp_gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    stats, events, lock = run(tmp_path, [2, 2, 2, 2], tmp_gallery, fake_detector, fake_embedder, file_camera)
    assert stats.grants == 0 and stats.denies >= 1
    assert {e.outcome for e in events} == {"deny"}
    assert [s for _, s in lock.history] == ["locked"]


def test_an_empty_doorway_is_not_judged(tmp_path, tmp_gallery, fake_detector, fake_embedder, file_camera):
    stats, events, _ = run(tmp_path, [None] * 5, tmp_gallery, fake_detector, fake_embedder, file_camera)
    assert stats.faces == 0 and events == [] and not fake_embedder.seen
