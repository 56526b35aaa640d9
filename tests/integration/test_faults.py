"""The fail-secure fault matrix (docs/reliability.md): each fault, and what the door does about it.

For every fault: the lock ends locked, the daemon keeps serving or stops
with an error (non-zero for systemd), no grant goes unaudited, and the event
is logged. The loop runs with fake detector and embedder (no model); where a
real file, process or database lock is the point, a real one is used.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from facegate.edge.audit import AuditLog
from facegate.edge.cli.main import EXIT_ERROR
from facegate.edge.camera import ReplaySource
from facegate.edge.config import Config
from facegate.edge.errors import CameraError, LockError
from facegate.edge.lock import GpioLock, LogLock
from facegate.edge.pipeline import FacePipeline
from facegate.edge.service import DoorDaemon
from facegate.edge.types import Embedding
from tests.unit.test_daemon_loop import config, frame

PIN = 17


class Notes:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []

    def notify(self, state: str) -> None:
        self.sent.append((time.monotonic(), state))

    def has(self, text: str) -> bool:
        return any(text in s for _, s in self.sent)

    def watchdog_times(self) -> list[float]:
        return [t for t, s in self.sent if "WATCHDOG=1" in s]


def enrolled(gallery, embedder, who: int = 1, name: str = "alice"):
    gallery.enroll(name, [Embedding(embedder.vector_for(who), embedder.model_id)])
    return gallery


def make(tmp_path, frames, gallery, detector, embedder, *, lock=None, audit=None, notifier=None, source=None,
         cfg=None, **kw) -> DoorDaemon:
    cfg = cfg or config(tmp_path)
    return DoorDaemon(
        # 20 fps: slow enough that a loaded machine drops no frame (the grabber keeps the newest only)
        cfg, source=source or ReplaySource([frame(w) for w in frames], fps=20.0),
        lock=lock or LogLock(unlock_seconds=0.2), gallery=gallery,
        audit=audit if audit is not None else AuditLog(cfg.storage.gallery),
        pipeline=FacePipeline(detector, embedder, cfg.quality), notifier=notifier or Notes(),
        reconnect_backoff=(0.05,), **kw)


def outcomes(audit: AuditLog) -> list[str]:
    return [e.outcome for e in reversed(audit.recent(1000))]


# --- a stage raises: detector, embedder, liveness (the policy) ---------------------------------
class FailingDetector:
    """The fake detector, raising on the given calls (1-based)."""

    def __init__(self, inner, fail_on: set[int]) -> None:
        self.inner, self.fail_on, self.calls = inner, fail_on, 0
        self.min_face_size = inner.min_face_size

    def detect(self, image, lores=None):
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("onnxruntime: bad allocation")
        return self.inner.detect(image)


def test_a_detector_error_skips_the_frame_and_the_door_keeps_serving(tmp_path, tmp_gallery, fake_detector,
                                                                      fake_embedder, caplog):
    enrolled(tmp_gallery, fake_embedder)
    detector = FailingDetector(fake_detector, {3})
    lock = LogLock(unlock_seconds=0.2)
    with caplog.at_level(logging.ERROR), make(tmp_path, [None, 1, 1, 1, 1, 1, None], tmp_gallery, detector,
                                              fake_embedder, lock=lock) as daemon:
        stats = daemon.run()
        rows = outcomes(daemon.audit)
    assert stats.stage_errors == 1 and "stage error" in caplog.text
    assert stats.grants == 1 and rows == ["grant"]  # she still gets in, and the grant has its row
    lock.close()
    assert lock.is_locked


def test_an_embedder_that_keeps_failing_stops_the_daemon_locked(tmp_path, tmp_gallery, fake_detector,
                                                                 fake_embedder):
    enrolled(tmp_gallery, fake_embedder)
    real = fake_embedder.embed_crops
    calls = []

    def broken(crops):
        calls.append(1)
        if len(calls) >= 2:
            raise MemoryError("embedder out of memory")
        return real(crops)

    fake_embedder.embed_crops = broken
    lock = LogLock(unlock_seconds=30.0)
    daemon = make(tmp_path, [1] * 20, tmp_gallery, fake_detector, fake_embedder, lock=lock)
    with pytest.raises(MemoryError), daemon:
        daemon.run()
    assert daemon.stats.stage_errors == daemon.config.daemon.max_stage_errors
    assert daemon.stats.grants == 0 and lock.is_locked
    lock.close()


def test_a_liveness_stage_that_raises_never_grants_on_evidence_from_before_it(tmp_path, tmp_gallery,
                                                                              fake_detector, fake_embedder):
    """The policy (where liveness checks run) raising between two matching frames drops the first."""
    enrolled(tmp_gallery, fake_embedder)
    lock = LogLock(unlock_seconds=0.2)
    daemon = make(tmp_path, [1] * 6, tmp_gallery, fake_detector, fake_embedder, lock=lock)
    real = daemon.policy.observe
    seen = []

    def liveness_then_policy(*a, **kw):
        seen.append(1)
        if len(seen) == 2:
            raise ValueError("liveness: homography fit did not converge")
        return real(*a, **kw)

    daemon.policy.observe = liveness_then_policy
    granted_at = []
    daemon.on_decision = lambda f, d: granted_at.append(len(seen)) if d.outcome == "grant" else None
    with daemon:
        stats = daemon.run()
    assert stats.stage_errors == 1
    # frame 1 matched, frame 2 raised: the evidence of frame 1 is gone, so 3 and 4 are needed
    assert granted_at == [4]
    lock.close()


# --- camera: unplugged for good, blocked in read() --------------------------------------------------
class DeadAfter(ReplaySource):
    """Delivers ``n`` frames, then fails every read (unplugged) or blocks in read (a wedged driver)."""

    def __init__(self, images, n: int, mode: str) -> None:
        super().__init__(images, fps=50.0, loop=True)
        self.n, self.mode, self.reads = n, mode, 0
        self.release = threading.Event()
        self.last_ok = time.monotonic()

    def read(self):
        self.reads += 1
        if self.reads > self.n:
            if self.mode == "block":
                self.release.wait(30)
            raise CameraError("USB camera disconnected")
        self.last_ok = time.monotonic()
        return super().read()


@pytest.mark.parametrize("mode", ["unplugged", "block"])
def test_a_camera_that_stops_starves_the_watchdog_and_ends_the_daemon_locked(tmp_path, tmp_gallery,
                                                                             fake_detector, fake_embedder, mode,
                                                                             caplog):
    enrolled(tmp_gallery, fake_embedder)
    cfg = config(tmp_path)
    cfg = replace(cfg, daemon=replace(cfg.daemon, watchdog=True, frame_timeout_seconds=0.5,
                                      camera_stall_seconds=1.5))
    source = DeadAfter([frame(None)], n=10, mode=mode)
    notes, lock = Notes(), LogLock(unlock_seconds=0.2)
    daemon = make(tmp_path, [], tmp_gallery, fake_detector, fake_embedder, lock=lock, notifier=notes,
                  source=source, cfg=cfg)
    with caplog.at_level(logging.ERROR), pytest.raises(CameraError, match="no frame"), daemon:
        daemon.run()
    source.release.set()
    feeds = notes.watchdog_times()
    assert feeds, "the watchdog was fed while frames came"
    # fed until the newest frame was 0.5 s old, never after
    assert max(feeds) <= source.last_ok + cfg.daemon.frame_timeout_seconds + 0.05
    assert daemon.watchdog.starved and "watchdog no longer fed" in caplog.text
    assert notes.has("STATUS=no camera frame")
    assert lock.is_locked
    lock.close()


def test_the_watchdog_is_fed_only_while_frames_are_fresh():
    from facegate.edge.service.watchdog import FrameWatchdog

    now = [100.0]
    notes = Notes()
    wd = FrameWatchdog(notes, frame_timeout=2.0, interval=1.0, clock=lambda: now[0])
    assert wd.feed(None)  # the camera is opening: the start counts as a frame
    now[0] = 101.5
    assert wd.feed(101.4)
    now[0] = 101.8
    assert not wd.feed(101.7)  # fresh, but fed 0.3 s ago
    now[0] = 110.0
    assert not wd.feed(101.7) and wd.starved  # 8 s without a frame
    now[0] = 111.0
    assert wd.feed(110.9) and not wd.starved
    assert wd.feeds == 3 and wd.max_gap == pytest.approx(9.5)
    assert len(notes.watchdog_times()) == 3


# --- audit: disk full, database locked by another process -------------------------------------------
def fill_disk(audit: AuditLog) -> None:
    """SQLite's own 'database or disk is full': the file may not grow past its current pages."""
    conn = audit._connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(Exception, match="full"):
        for i in range(10_000):
            conn.execute("INSERT INTO events (ts, outcome, reason) VALUES (?, 'deny', ?)", (i, "x" * 4000))


def test_disk_full_refuses_the_grant_and_keeps_serving(tmp_path, tmp_gallery, fake_detector, fake_embedder,
                                                       caplog):
    enrolled(tmp_gallery, fake_embedder)
    lock = LogLock(unlock_seconds=0.2)
    audit = AuditLog(tmp_path / "audit.db")
    fill_disk(audit)
    before = audit.count()
    source = ReplaySource([frame(w) for w in [2, 2, 2, None] + [1] * 8], fps=20.0)
    with caplog.at_level(logging.ERROR), make(tmp_path, [], tmp_gallery, fake_detector, fake_embedder,
                                              lock=lock, audit=audit, source=source) as daemon:
        stats = daemon.run()
    # each refused grant leaves no cooldown: she is judged again at once, and refused again
    assert stats.grants == 0 and stats.grants_refused >= 2 and stats.audit_failures >= 3
    assert [s for _, s in lock.history] == ["locked"]  # never opened without its row
    assert "could not be audited" in caplog.text and "full" in caplog.text
    assert audit.count() == before
    lock.close()
    audit.close()


def test_a_database_locked_by_another_process_keeps_the_door_shut_until_the_grant_is_recorded(
        tmp_path, tmp_gallery, fake_detector, fake_embedder):
    enrolled(tmp_gallery, fake_embedder)
    db = tmp_path / "audit.db"
    audit = AuditLog(db)
    audit._connection().execute("PRAGMA busy_timeout = 300")  # the daemon's 5 s, shortened for the test
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = LogLock(unlock_seconds=0.2)
        with make(tmp_path, [1, 1, 1], tmp_gallery, fake_detector, fake_embedder, lock=lock,
                  audit=audit) as daemon:
            stats = daemon.run()
        assert stats.grants == 0 and stats.grants_refused == 1
        assert [s for _, s in lock.history] == ["locked"]
    finally:
        holder.communicate("\n", timeout=10)
    # the other process let go: the next visit opens, with its row
    lock = LogLock(unlock_seconds=0.2)
    with make(tmp_path, [None, 1, 1, 1], tmp_gallery, fake_detector, fake_embedder, lock=lock,
              audit=audit) as daemon:
        stats = daemon.run()
    assert stats.grants == 1 and outcomes(audit) == ["grant"]
    assert "unlocked" in [s for _, s in lock.history]
    lock.close()
    audit.close()


# --- the lock's output cannot be driven ---------------------------------------------------------------
def stick_high(mock_factory):
    """The relay pin ignores writes to LOW (a failed GPIO write)."""
    pin = mock_factory.pin(PIN)
    real = pin._set_state

    def write(value):
        if not value:
            raise OSError(5, "Input/output error")
        real(value)

    pin._set_state = write
    return lambda: setattr(pin, "_set_state", real)


def test_a_relock_that_fails_is_reported_and_retried_never_claimed(mock_factory):
    lock = GpioLock(PIN, unlock_seconds=30.0, pin_factory=mock_factory)
    try:
        lock.unlock()
        heal = stick_high(mock_factory)
        with pytest.raises(LockError, match="cannot drive"):
            lock.lock()
        assert not lock.is_locked and mock_factory.pin(PIN).state  # it says what the pin is: open
        heal()
        deadline = time.monotonic() + 2
        while not lock.is_locked and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.is_locked and not mock_factory.pin(PIN).state  # the relock thread got it locked
    finally:
        lock.close()


def test_the_daemon_stops_non_zero_when_it_cannot_relock(tmp_path, tmp_gallery, fake_detector, fake_embedder,
                                                         mock_factory):
    enrolled(tmp_gallery, fake_embedder)
    lock = GpioLock(PIN, unlock_seconds=30.0, pin_factory=mock_factory)
    daemon = make(tmp_path, [1, 1, 1, 1, None, None], tmp_gallery, fake_detector, fake_embedder, lock=lock)
    heal = None

    def after(frame_, decision):
        nonlocal heal
        if decision.outcome == "grant":
            heal = stick_high(mock_factory)

    daemon.on_decision = after
    with pytest.raises(LockError), daemon:
        daemon.run()
    assert not lock.is_locked  # honest while the pin is stuck high
    heal()
    lock.close()
    assert not mock_factory.pin(PIN).state
    assert outcomes(daemon.audit) == ["grant"]


# --- configuration: dangerous values, reload --------------------------------------------------------
def test_a_threshold_that_grants_strangers_is_refused_on_reload(tmp_path, tmp_gallery, fake_detector,
                                                               fake_embedder, caplog):
    enrolled(tmp_gallery, fake_embedder)
    cfg_file = tmp_path / "facegate.toml"
    cfg_file.write_text("[match]\nthreshold = 0.4\n")
    notes = Notes()
    daemon = make(tmp_path, [None], tmp_gallery, fake_detector, fake_embedder, notifier=notes,
                  config_path=cfg_file)
    with daemon, caplog.at_level(logging.ERROR):
        daemon.reload()
        assert daemon.config.match.threshold == 0.4
        cfg_file.write_text("[match]\nthreshold = 2.0\n")  # matches everybody
        daemon.reload()
        assert daemon.config.match.threshold == 0.4 and "reload refused" in caplog.text
        assert notes.has("reload refused")
        cfg_file.write_text("[match]\nthreshold = 2.0\nallow_unsafe_threshold = true\n")  # said explicitly
        daemon.reload()
        assert daemon.config.match.threshold == 2.0


def test_a_threshold_that_grants_strangers_is_refused_at_start(tmp_path, tmp_gallery, fake_detector,
                                                              fake_embedder):
    from facegate.edge.errors import ConfigError

    enrolled(tmp_gallery, fake_embedder)
    cfg = config(tmp_path)
    cfg = replace(cfg, match=replace(cfg.match, threshold=2.0))
    with make(tmp_path, [None], tmp_gallery, fake_detector, fake_embedder, cfg=cfg) as daemon:
        with pytest.raises(ConfigError, match="allow_unsafe_threshold"):
            daemon.preflight()


# --- start-up refusals through `facegate run` (one line, exit 2, nothing created) ------------------
def run_cli(tmp_path, gallery, extra: str = "") -> tuple[int, str]:
    cfg = tmp_path / "facegate.toml"
    (tmp_path / "frames").mkdir(exist_ok=True)
    cfg.write_text(f'[camera]\ntype = "replay"\npath = "{tmp_path / "frames"}"\n[lock]\ntype = "log"\n'
                   f'[storage]\ngallery = "{gallery}"\n{extra}')
    proc = subprocess.run([sys.executable, "-c", "import sys; from facegate.edge.cli.main import main; "
                           f"sys.exit(main(['run', '--config', {str(cfg)!r}]))"],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


def one_line_error(err: str) -> str:
    """The CLI's refusal: its last line, no traceback anywhere."""
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_no_gallery_refuses_to_start_and_creates_none(tmp_path):
    gallery = tmp_path / "state" / "gallery.db"
    rc, err = run_cli(tmp_path, gallery)
    line = one_line_error(err)
    assert rc == EXIT_ERROR and line.startswith("facegate run: error:") and "no gallery" in line and "enroll" in line
    assert not gallery.exists() and not gallery.parent.exists()


def test_a_corrupt_gallery_refuses_to_start(tmp_path):
    gallery = tmp_path / "gallery.db"
    gallery.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)
    rc, err = run_cli(tmp_path, gallery)
    line = one_line_error(err)
    assert rc == EXIT_ERROR and line.startswith("facegate run: error:") and str(gallery) in line


def test_a_gallery_locked_by_another_process_refuses_to_start(tmp_path):
    """(The gallery is opened with SQLite's 5 s busy timeout: this test waits that long.)"""
    from facegate.edge.gallery import Gallery

    db = tmp_path / "locked.db"
    Gallery(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\n"
         f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
         "c.execute('PRAGMA journal_mode = DELETE'); c.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True); sys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, err = run_cli(tmp_path, db)
    finally:
        holder.communicate("\n", timeout=10)
    line = one_line_error(err)
    assert rc == EXIT_ERROR and "database is locked" in line and str(db) in line


def test_an_empty_gallery_and_one_of_another_model_refuse_to_start(tmp_path, fake_embedder):
    from facegate.edge.errors import GalleryError, GalleryModelMismatch
    from facegate.edge.gallery import Gallery
    from facegate.edge.service.preflight import check_ready

    thresholds = fake_embedder.thresholds
    with Gallery(tmp_path / "g.db") as g:
        with pytest.raises(GalleryError, match="nobody is enrolled"):
            check_ready(g, fake_embedder.model_id, thresholds, None, False)
        g.enroll("alice", [Embedding(np.eye(4, dtype=np.float32)[0], "facenet-casia-20180408-704afe26766c")])
        with pytest.raises(GalleryModelMismatch, match="re-enroll everyone"):
            check_ready(g, fake_embedder.model_id, thresholds, None, False)


# --- model files: missing, altered ------------------------------------------------------------------
def test_an_altered_detector_net_is_refused(tmp_path, monkeypatch):
    import shutil

    from facegate.edge.detect import mtcnn
    from facegate.edge.errors import ChecksumError

    for name in ("pnet", "rnet", "onet"):
        shutil.copy(mtcnn._model_dir() / f"{name}.onnx", tmp_path / f"{name}.onnx")
    data = bytearray((tmp_path / "rnet.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "rnet.onnx").write_bytes(bytes(data))
    monkeypatch.setattr(mtcnn, "_model_dir", lambda: tmp_path)
    with pytest.raises(ChecksumError, match="rnet.onnx"):
        mtcnn.MtcnnDetector()
    (tmp_path / "rnet.onnx").unlink()
    with pytest.raises(mtcnn.ModelError, match="not found"):
        mtcnn.MtcnnDetector()


def test_an_altered_reference_model_is_refused(tmp_path, monkeypatch):
    from facegate.edge.embed import references
    from facegate.edge.errors import ChecksumError

    with pytest.raises(ChecksumError, match="facenet-casia-20180408-704afe26766c"):
        references.check_pinned("facenet", "facenet-casia-20180408-0123456789ab", tmp_path / "graph_final.pb")
    references.check_pinned("facenet", "facenet-casia-20180408-704afe26766c", tmp_path / "graph_final.pb")


@pytest.mark.parametrize("damage", ["altered", "missing"])
def test_a_damaged_model_bundle_refuses_to_start(tmp_path, damage):
    from facegate.edge.gallery import Gallery
    from tests.helpers import tiny_bundle

    bundle = tiny_bundle(tmp_path / "bundle")
    model = bundle / "model.onnx"
    if damage == "altered":
        model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    else:
        model.unlink()
    Gallery(tmp_path / "gallery.db").close()
    rc, err = run_cli(tmp_path, tmp_path / "gallery.db", f'[embedder]\nname = "{bundle}"\n')
    line = one_line_error(err)
    assert rc == EXIT_ERROR and line.startswith("facegate run: error:") and "model.onnx" in line
    assert ("sha256" in line) if damage == "altered" else True


def test_a_gallery_path_that_is_a_folder_refuses_to_start(tmp_path):
    from facegate.edge.errors import GalleryError
    from facegate.edge.service.preflight import open_door_gallery

    with pytest.raises(GalleryError, match="not a gallery file"):
        open_door_gallery(tmp_path)


def test_a_reload_does_not_lift_a_running_lockout(tmp_path, tmp_gallery, fake_detector, fake_embedder):
    enrolled(tmp_gallery, fake_embedder)
    cfg_file = tmp_path / "facegate.toml"
    cfg_file.write_text("[policy]\nmax_denied = 2\nmin_interval_seconds = 0.0\n")
    daemon = make(tmp_path, [2] * 4, tmp_gallery, fake_detector, fake_embedder, config_path=cfg_file)
    with daemon:
        daemon.reload()
        daemon.run()
        assert daemon.policy.lockout_remaining() > 50
        cfg_file.write_text("[policy]\nmax_denied = 3\nmin_interval_seconds = 0.0\n")
        daemon.reload()
        assert daemon.policy.config.max_denied == 3 and daemon.policy.lockout_remaining() > 50
