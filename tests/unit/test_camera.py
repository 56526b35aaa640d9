"""Frame sources and the newest-frame grabber, without any camera hardware."""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facegate.edge.camera import (
    FrameSource,
    LatestFrameGrabber,
    OpenCVSource,
    Picamera2Source,
    ReplaySource,
    create_source,
)
from facegate.edge.config import CameraConfig
from facegate.edge.errors import BackendUnavailable, CameraError, CameraUnavailable
from facegate.edge.types import Frame


def _image(value: int, size: tuple[int, int] = (32, 24)) -> np.ndarray:
    """A flat BGR image whose grey level identifies it after JPEG/PNG round trips."""
    w, h = size
    return np.full((h, w, 3), value, dtype=np.uint8)


def _ident(frame: Frame) -> int:
    return int(round(float(frame.image.mean()) / 20.0))


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(3):
        assert cv2.imwrite(str(d / f"{i:03d}.png"), _image(20 * i))
    (d / "notes.txt").write_text("not an image, not even looked at")
    return d


def _read_all(source: FrameSource, limit: int = 100) -> list[Frame]:
    frames = []
    with source:
        while len(frames) < limit:
            f = source.read()
            if f is None:
                break
            frames.append(f)
    return frames


# --- ReplaySource -------------------------------------------------------------
def test_replay_folder_in_order_then_ends(image_dir: Path) -> None:
    frames = _read_all(ReplaySource(image_dir))
    assert [_ident(f) for f in frames] == [0, 1, 2]
    assert [f.index for f in frames] == [1, 2, 3]
    assert all(f.image.dtype == np.uint8 and f.image.shape == (24, 32, 3) for f in frames)
    assert all(a.timestamp <= b.timestamp for a, b in zip(frames, frames[1:]))
    assert frames[0].source.startswith("replay:")


def test_replay_folder_loops(image_dir: Path) -> None:
    frames = _read_all(ReplaySource(image_dir, loop=True), limit=7)
    assert [_ident(f) for f in frames] == [0, 1, 2, 0, 1, 2, 0]


def test_replay_skips_unreadable_file(image_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    (image_dir / "001b.jpg").write_bytes(b"this is not a jpeg")
    with caplog.at_level(logging.WARNING, logger="facegate.edge.camera"):
        frames = _read_all(ReplaySource(image_dir, loop=True), limit=6)
    assert [_ident(f) for f in frames] == [0, 1, 2, 0, 1, 2]
    skipped = [r for r in caplog.records if "001b.jpg" in r.getMessage()]
    assert len(skipped) == 1  # logged once, not once per loop


def test_replay_all_unreadable_ends_instead_of_spinning(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"junk")
    assert _read_all(ReplaySource(tmp_path, loop=True)) == []


def test_replay_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(CameraUnavailable):
        ReplaySource(tmp_path / "nope").open()
    with pytest.raises(CameraUnavailable):
        ReplaySource(tmp_path).open()


def test_replay_arrays_converts_grey_and_loops() -> None:
    grey = np.full((8, 8), 40, dtype=np.uint8)
    frames = _read_all(ReplaySource([_image(20), grey], loop=True), limit=3)
    assert [f.image.shape for f in frames] == [(24, 32, 3), (8, 8, 3), (24, 32, 3)]
    assert [_ident(f) for f in frames] == [1, 2, 1]


def test_replay_fps_pacing_is_roughly_honoured() -> None:
    source = ReplaySource([_image(0)] * 6, fps=50.0)
    start = time.monotonic()
    frames = _read_all(source)
    elapsed = time.monotonic() - start
    assert len(frames) == 6
    # 6 frames at 50 fps: 5 periods of 20 ms after the first. Loose upper bound for slow CI.
    assert 0.08 <= elapsed < 1.0
    # The schedule holds the average rate (a late frame shortens the next gap
    # rather than shifting every later one), so check the mean, not each gap.
    mean_gap = (frames[-1].timestamp - frames[0].timestamp) / 5
    assert 0.016 <= mean_gap < 0.2


def test_replay_video_file_and_loop(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    assert writer.isOpened()
    for i in range(4):
        writer.write(_image(40 * i))
    writer.release()

    frames = _read_all(ReplaySource(path))
    assert [round(float(f.image.mean()) / 40) for f in frames] == [0, 1, 2, 3]
    looped = _read_all(ReplaySource(path, loop=True), limit=6)
    assert [round(float(f.image.mean()) / 40) for f in looped] == [0, 1, 2, 3, 0, 1]
    assert [f.index for f in looped] == [1, 2, 3, 4, 5, 6]


def test_source_lifecycle_close_idempotent_and_reopen(image_dir: Path) -> None:
    source = ReplaySource(image_dir)
    assert isinstance(source, FrameSource)
    with pytest.raises(CameraError):
        source.read()  # not open yet
    with source:
        assert source.read() is not None
    source.close()
    source.close()
    assert source.closed
    source.open()  # reopen starts again
    assert _ident(source.read()) == 0
    source.close()


# --- OpenCVSource / Picamera2Source ---------------------------------------------
def test_opencv_missing_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(CameraUnavailable):
        OpenCVSource(str(tmp_path / "missing.avi")).open()


def test_opencv_missing_device_is_unavailable() -> None:
    with pytest.raises(CameraUnavailable):
        OpenCVSource("/dev/video-does-not-exist").open()


def test_opencv_digit_string_means_device_index() -> None:
    assert OpenCVSource("3").target == 3
    assert OpenCVSource("3").live


@pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed")
def test_picamera2_missing_backend_says_how_to_install() -> None:
    with pytest.raises(BackendUnavailable) as info:
        Picamera2Source().open()
    assert "apt install python3-picamera2" in str(info.value)
    assert "--system-site-packages" in str(info.value)
    assert isinstance(info.value, ImportError)


def test_create_source_by_type(image_dir: Path) -> None:
    assert isinstance(create_source(CameraConfig(type="replay", path=str(image_dir))), ReplaySource)
    assert isinstance(create_source(CameraConfig(type="opencv", device="1")), OpenCVSource)
    assert isinstance(create_source(CameraConfig(type="picamera2")), Picamera2Source)


# --- LatestFrameGrabber -----------------------------------------------------------
class FakeCamera:
    """A live source at ~1 kHz that fails to open/read for a while when told to."""

    def __init__(self, fail_opens: int = 0, fail_reads_after: int | None = None, fail_reads: int = 0) -> None:
        self.name = "fake"
        self.fail_opens = fail_opens
        self.fail_reads_after = fail_reads_after
        self.fail_reads = fail_reads
        self.opens = self.open_calls = self.closes = self.reads = 0
        self.is_open = False

    def open(self) -> None:
        self.open_calls += 1
        if self.fail_opens > 0:
            self.fail_opens -= 1
            raise CameraUnavailable("fake camera unplugged")
        self.opens += 1
        self.is_open = True

    def read(self) -> Frame | None:
        assert self.is_open
        self.reads += 1
        if self.fail_reads_after is not None and self.reads > self.fail_reads_after and self.fail_reads > 0:
            self.fail_reads -= 1
            raise CameraError("fake camera stopped delivering")
        time.sleep(0.001)
        return Frame(image=np.zeros((4, 4, 3), np.uint8), timestamp=time.monotonic(), index=0, source=self.name)

    def close(self) -> None:
        self.closes += 1
        self.is_open = False

    def __enter__(self) -> FakeCamera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_grabber_keeps_only_newest_frame() -> None:
    grabber = LatestFrameGrabber(FakeCamera())
    seen: list[Frame] = []
    with grabber:
        for _ in range(5):
            frame = grabber.get(timeout=2.0)
            assert frame is not None
            seen.append(frame)
            time.sleep(0.03)  # slow consumer
            # whatever is in the slot now is at least as new as what we took
            assert grabber._latest is not None and grabber._latest.index >= frame.index
        produced_before_last_get = grabber.frames
    assert not grabber.running
    indices = [f.index for f in seen]
    assert all(b > a for a, b in zip(indices, indices[1:]))
    assert all(b - a > 1 for a, b in zip(indices, indices[1:]))  # older frames were skipped
    assert grabber.dropped > 0
    assert produced_before_last_get > len(seen)


def test_grabber_get_returns_each_frame_once() -> None:
    frames = [_image(v) for v in (0, 20, 40)]
    with LatestFrameGrabber(ReplaySource(frames, fps=20)) as grabber:
        got = []
        while (f := grabber.get(timeout=2.0)) is not None:
            got.append(f.index)
        assert grabber.finished
    assert got == sorted(set(got)) and got[-1] == 3


def test_grabber_finishes_on_finite_source(image_dir: Path) -> None:
    grabber = LatestFrameGrabber(ReplaySource(image_dir)).start()
    deadline = time.monotonic() + 5
    while not grabber.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert grabber.finished
    last = grabber.get(timeout=0.1)
    assert last is not None and last.index == 3
    assert grabber.get(timeout=5.0) is None  # returns at once, does not wait 5 s
    grabber.stop()


def test_grabber_survives_camera_loss_and_reconnects() -> None:
    cam = FakeCamera(fail_opens=3, fail_reads_after=20, fail_reads=1)
    faults: list[str] = []
    grabber = LatestFrameGrabber(cam, reconnect_backoff=(0.01, 0.02, 0.05))
    with grabber:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if grabber.fault:
                faults.append(grabber.fault)
            if cam.reads > 40 and grabber.fault is None:
                break
            time.sleep(0.002)
        assert grabber.get(timeout=2.0) is not None
        assert grabber.running
        assert grabber.fault is None  # recovered
    assert cam.open_calls == 3 + 2  # three failed opens, a good one, a reopen after the read fault
    assert cam.opens == 2
    assert grabber.reconnects == 2
    assert any("open failed" in f for f in faults)
    assert not cam.is_open and not grabber.running


def test_grabber_stop_interrupts_backoff_and_joins() -> None:
    cam = FakeCamera(fail_opens=10**6)
    grabber = LatestFrameGrabber(cam, reconnect_backoff=(30.0,)).start()
    time.sleep(0.05)
    assert grabber.fault is not None and "unplugged" in grabber.fault
    started = time.monotonic()
    grabber.stop()
    assert time.monotonic() - started < 2.0
    assert not grabber.running
    assert grabber.get(timeout=5.0) is None
    assert not any(t.name == grabber.name for t in threading.enumerate())


def test_grabber_missing_backend_is_fatal_not_retried() -> None:
    class NoBackend(FakeCamera):
        def open(self) -> None:
            self.open_calls += 1
            raise BackendUnavailable("no such library")

    cam = NoBackend()
    with LatestFrameGrabber(cam, reconnect_backoff=(0.001,)) as grabber:
        assert grabber.get(timeout=5.0) is None
        assert isinstance(grabber.error, BackendUnavailable)
    assert cam.open_calls == 1
