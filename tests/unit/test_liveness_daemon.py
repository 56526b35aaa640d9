"""The door with liveness on (its default): a photo's planar landmarks are denied and audited, a head opens it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from facegate.edge.align import NO_QUALITY_GATE
from facegate.edge.audit import AuditLog
from facegate.edge.config import Config
from facegate.edge.lock import LogLock
from facegate.edge.pipeline import FacePipeline
from facegate.edge.service import DoorDaemon, NullNotifier
from facegate.edge.types import Detection, Embedding

from .test_liveness import sequence


class ScriptedDetector:
    """One face per frame whose landmarks follow a scripted sequence (a head or a photo moving)."""

    type_key = "scripted"
    min_face_size = 60

    def __init__(self, landmarks: list[np.ndarray]) -> None:
        self.landmarks = landmarks
        self.calls = 0

    def detect(self, image, lores=None):
        pts = self.landmarks[min(self.calls, len(self.landmarks) - 1)].astype(np.float32)
        self.calls += 1
        x1, y1 = pts.min(axis=0) - 30
        x2, y2 = pts.max(axis=0) + 30
        return [Detection(box=(float(x1), float(y1), float(x2), float(y2)), score=0.99, landmarks=pts)]


def run_door(tmp_path, tmp_gallery, fake_embedder, file_camera, kind: str):
    base = Config.default()
    assert base.liveness.enabled  # the default door checks liveness
    cfg = replace(base, lock=replace(base.lock, type="log", unlock_seconds=0.2),
                  storage=replace(base.storage, gallery=str(tmp_path / "g.db")),
                  daemon=replace(base.daemon, watchdog=False), quality=NO_QUALITY_GATE,
                  liveness=replace(base.liveness, checks=("planar",)))  # the frames are flat colour: no screen cue
    tmp_gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[..., 0] = 80  # the fake embedder reads "alice" from this blue level
    detector = ScriptedDetector([s.landmarks for s in sequence(kind, frames=30)])
    lock = LogLock(unlock_seconds=0.2)
    with AuditLog(cfg.storage.gallery) as audit, DoorDaemon(
            cfg, source=file_camera([frame] * 30, fps=30.0), lock=lock, gallery=tmp_gallery, audit=audit,
            pipeline=FacePipeline(detector, fake_embedder, cfg.quality), notifier=NullNotifier()) as daemon:
        stats = daemon.run()
        events = audit.recent()
    lock.close()
    return stats, events, lock


@pytest.mark.parametrize("kind", ["moved photo"])
def test_a_photo_moved_as_a_plane_is_denied_and_the_reason_audited(tmp_path, tmp_gallery, fake_embedder,
                                                                   file_camera, kind):
    stats, events, lock = run_door(tmp_path, tmp_gallery, fake_embedder, file_camera, kind)
    assert stats.grants == 0 and [s for _, s in lock.history] == ["locked"]
    assert events and {e.outcome for e in events} == {"deny"}
    assert events[0].reason.startswith("spoof: planar: moved")


def test_a_turning_head_opens_the_door(tmp_path, tmp_gallery, fake_embedder, file_camera):
    stats, events, _ = run_door(tmp_path, tmp_gallery, fake_embedder, file_camera, "turning head")
    assert stats.grants == 1 and [e.outcome for e in events] == ["grant"]
    assert "live (planar: nose parallax" in events[0].reason
