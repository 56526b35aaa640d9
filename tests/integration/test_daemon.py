"""The door daemon end to end: replay frames, real detector and model, mock GPIO pin."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import pytest

from facegate.edge.audit import AuditLog
from facegate.edge.camera import ReplaySource
from facegate.edge.config import Config
from facegate.edge.service.daemon import DoorDaemon
from facegate.edge.pipeline import create_pipeline
from facegate.edge.errors import CameraError
from facegate.edge.gallery import Gallery
from facegate.edge.lock import GpioLock
from facegate.edge.recognition import enroll
from facegate.edge.eval.samples import sample_portrait
from facegate.edge.demo.scenario import Shot, render_shots

PIN = 17
FPS = 12.0


def config(**policy) -> Config:
    base = Config.default()
    return replace(
        base,
        policy=replace(base.policy, **{"cooldown_seconds": 1.0, **policy}),
        lock=replace(base.lock, unlock_seconds=0.4),
        daemon=replace(base.daemon, watchdog=True),
        # the scenario pastes one portrait into each frame: a planar photo, which liveness rightly refuses
        liveness=replace(base.liveness, enabled=False),
    )


@pytest.fixture(scope="module")
def pipeline():
    return create_pipeline(config())


class Notes:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def notify(self, state: str) -> None:
        self.sent.append(state)


@pytest.fixture()
def pins(mock_factory):
    """The mock pin factory; every lock made on it is closed before the factory."""
    made: list[GpioLock] = []
    mock_factory.locks = made
    yield mock_factory
    for lock in made:
        lock.close()


def make_daemon(cfg, frames, pipeline, mock_factory, source=None, notifier=None, **kw):
    gallery = Gallery(":memory:")
    enroll(pipeline, gallery, "eileen", [sample_portrait("astronaut")])
    lock = GpioLock(PIN, unlock_seconds=cfg.lock.unlock_seconds, pin_factory=mock_factory)
    mock_factory.locks.append(lock)
    src = source or ReplaySource([f.image for f in frames], fps=FPS)
    daemon = DoorDaemon(cfg, source=src, lock=lock, pipeline=pipeline, gallery=gallery,
                        audit=AuditLog(":memory:"), notifier=notifier or Notes(), reconnect_backoff=(0.05,), **kw)
    return daemon, lock, gallery


def unlock_pulses(mock_factory) -> int:
    states = [s.state for s in mock_factory.pin(PIN).states]
    return sum(1 for a, b in zip(states, states[1:]) if not a and b)


def visit_frames(shots, seed=0):
    frames = render_shots(shots, seed=seed)
    return frames, [f.truth for f in frames]


def test_the_enrolled_person_opens_once_per_visit_and_strangers_never(pipeline, pins):
    shots = [
        Shot(None, 4, "empty"),
        Shot("astronaut", 12, "visit 1", face_px=(130.0, 160.0)),
        Shot(None, 18, "absent longer than the cooldown"),
        Shot("grace_hopper", 14, "stranger", face_px=(130.0, 160.0)),
        Shot(None, 6, "empty"),
        Shot("astronaut", 12, "visit 2", face_px=(130.0, 160.0)),
        Shot(None, 4, "empty"),
    ]
    frames, truth = visit_frames(shots)
    grants = []
    daemon, lock, gallery = make_daemon(config(), frames, pipeline, pins,
                                        on_decision=lambda f, d: grants.append((f.index, d)) if d.outcome == "grant"
                                        else None)
    with daemon:
        stats = daemon.run()
    assert 0 < stats.frames <= len(frames)  # frames the loop could not keep up with are dropped, never queued
    # exactly one unlock per visit, and each on a frame of her
    assert len(grants) == 2
    assert all(truth[i - 1] == "astronaut" and d.name == "eileen" for i, d in grants)
    assert unlock_pulses(pins) == 2
    assert pins.pin(PIN).state is False  # ends locked
    assert stats.denies > 0  # the stranger was judged and denied
    events = daemon.audit.recent(100)
    assert {e.outcome for e in events} >= {"grant", "deny"}
    assert all(e.name in (None, "eileen") for e in events)
    assert daemon.stats.decision_latency_s and max(daemon.stats.decision_latency_s) < 3.0


def test_strangers_and_empty_frames_never_unlock(pipeline, pins):
    shots = [Shot(None, 6, "empty"), Shot("grace_hopper", 20, "stranger"), Shot(None, 6, "empty")]
    frames, _ = visit_frames(shots, seed=3)
    daemon, lock, _ = make_daemon(config(), frames, pipeline, pins)
    with daemon:
        daemon.run()
    assert unlock_pulses(pins) == 0
    assert [s.state for s in pins.pin(PIN).states] == [False]


def test_several_faces_judge_the_largest_and_never_grant_the_face_behind(pipeline, pins):
    shots = [Shot("grace_hopper", 20, "stranger in front, Eileen behind", face_px=(165.0, 185.0),
                  centre=(260.0, 215.0), behind="astronaut")]
    frames, _ = visit_frames(shots, seed=5)
    daemon, lock, _ = make_daemon(config(), frames, pipeline, pins)
    with daemon:
        daemon.run()
    assert unlock_pulses(pins) == 0


def test_sigterm_during_an_unlock_leaves_the_pin_locked(pipeline, pins):
    shots = [Shot("astronaut", 60, "she stays", face_px=(130.0, 160.0))]
    frames, _ = visit_frames(shots, seed=1)
    cfg = replace(config(), lock=replace(config().lock, unlock_seconds=30.0))  # would stay open long
    daemon, lock, _ = make_daemon(cfg, frames, pipeline, pins)
    opened = threading.Event()

    def watch():
        deadline = time.monotonic() + 20
        while lock.is_locked and time.monotonic() < deadline:
            time.sleep(0.01)
        if not lock.is_locked:
            opened.set()
        os.kill(os.getpid(), signal.SIGTERM)

    saved = daemon.install_signal_handlers()
    try:
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.monotonic()
        with daemon:
            stats = daemon.run()
        elapsed = time.monotonic() - t0
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    assert opened.is_set(), "the door never opened"
    assert stats.frames < len(frames)  # it stopped early, on the signal
    assert elapsed < 10  # far less than the 30 s unlock
    assert pins.pin(PIN).state is False
    assert [s.state for s in pins.pin(PIN).states] == [False, True, False]


class FlakySource(ReplaySource):
    """Fails to read for a while mid-stream (a camera unplugged), then recovers."""

    def __init__(self, images, fail_at: int, failures: int) -> None:
        super().__init__(images, fps=FPS)
        self.reads = 0
        self.fail_at, self.failures = fail_at, failures
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        super().open()

    def read(self):
        self.reads += 1
        if self.fail_at <= self.reads < self.fail_at + self.failures:
            raise CameraError("USB camera disconnected")
        return super().read()


def test_a_camera_that_fails_and_comes_back_is_survived(pipeline, pins):
    shots = [Shot(None, 10, "empty"), Shot("astronaut", 14, "visit after the fault", face_px=(130.0, 160.0))]
    frames, _ = visit_frames(shots, seed=2)
    source = FlakySource([f.image for f in frames], fail_at=5, failures=3)
    notes = Notes()
    daemon, lock, _ = make_daemon(config(), frames, pipeline, pins, source=source, notifier=notes)
    with daemon:
        stats = daemon.run()
    assert stats.camera_faults >= 1 and source.opens >= 2
    assert any("camera fault" in n for n in notes.sent)
    assert unlock_pulses(pins) == 1  # she still gets in after the camera is back
    assert notes.sent[0].startswith("READY=1") and "WATCHDOG=1" in notes.sent
    assert pins.pin(PIN).state is False


class Boom(Exception):
    pass


def test_an_unhandled_error_while_unlocked_leaves_the_door_locked(pipeline, pins):
    shots = [Shot("astronaut", 30, "she stays", face_px=(130.0, 160.0))]
    frames, _ = visit_frames(shots, seed=4)
    cfg = replace(config(), lock=replace(config().lock, unlock_seconds=30.0))
    daemon, lock, _ = make_daemon(cfg, frames, pipeline, pins)
    real = daemon.pipeline.largest

    def failing(image, gated=True):
        if not lock.is_locked:
            raise Boom("model runtime crashed")
        return real(image, gated)

    daemon.pipeline = replace_largest(daemon.pipeline, failing)
    with pytest.raises(Boom):
        with daemon:
            daemon.run()
    assert [s.state for s in pins.pin(PIN).states] == [False, True, False]


def replace_largest(pipeline, fn):
    clone = type(pipeline)(pipeline.detector, pipeline.embedder, pipeline.quality)
    clone.largest = fn
    return clone


def test_sighup_reloads_the_gallery_and_a_changed_config(pipeline, pins, tmp_path):
    cfg_file = tmp_path / "facegate.toml"
    cfg_file.write_text("[policy]\nk = 2\nn = 3\n")
    frames, _ = visit_frames([Shot(None, 3, "empty")])
    daemon, lock, gallery = make_daemon(config(), frames, pipeline, pins, config_path=cfg_file)
    with daemon:
        cfg_file.write_text("[policy]\nk = 3\nn = 4\n")
        daemon.request_reload()
        daemon.run()
        assert (daemon.policy.config.k, daemon.policy.config.n) == (3, 4)
        cfg_file.write_text("[policy]\nk = 9\nn = 2\n")  # invalid: k > n
        daemon.reload()
        assert daemon.policy.config.k == 3  # the bad file is refused, the running config kept


def test_the_stall_guard_locks_an_open_door_when_the_loop_stops_beating(pins):
    from facegate.edge.service.daemon import StallGuard

    lock = GpioLock(PIN, unlock_seconds=30.0, pin_factory=pins)
    pins.locks.append(lock)
    guard = StallGuard(lock, stall_seconds=0.3).start()
    try:
        lock.unlock()
        for _ in range(5):  # a healthy loop keeps beating: the door stays as it is
            guard.beat()
            time.sleep(0.1)
        assert not lock.is_locked
        time.sleep(1.0)  # the loop is stuck (a frame hung in native code)
        assert lock.is_locked and guard.tripped == 1
    finally:
        guard.stop()
    assert [s.state for s in pins.pin(PIN).states] == [False, True, False]
