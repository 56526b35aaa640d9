"""A recorded video as the door's camera (``[camera] type = "opencv"``, ``device = "door.mp4"``).

It is played at its own frame rate, as a camera delivers frames, so the
door judges them instead of skipping them; at its end the daemon stops
cleanly (exit 0, locked), as a replay does, instead of spinning with a
starved watchdog.
"""

import re
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from facegate.edge.align import NO_QUALITY_GATE
from facegate.edge.camera import OpenCVSource, create_source
from facegate.edge.config import CameraConfig, Config
from facegate.edge.demo.scenario import Shot, render_shots
from facegate.edge.errors import CameraError
from facegate.edge.eval.samples import portrait_path
from facegate.edge.lock import LogLock
from facegate.edge.pipeline import FacePipeline
from facegate.edge.service import DoorDaemon, NullNotifier

FPS = 5.0


def write_video(path, frames, fps=FPS):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write mp4v video")
    for frame in frames:
        writer.write(frame)
    writer.release()
    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert count == len(frames)
    return path


@pytest.fixture()
def plain_video(tmp_path):
    rng = np.random.default_rng(0)
    return write_video(tmp_path / "door.mp4", [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(12)])


def test_a_video_file_is_a_finite_source_played_at_its_own_rate(plain_video):
    source = create_source(CameraConfig(type="opencv", device=str(plain_video)))
    assert isinstance(source, OpenCVSource) and source.finite
    with source:
        t0 = time.monotonic()
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        took = time.monotonic() - t0
    assert len(frames) == 12
    assert took >= 11 / FPS * 0.9  # 12 frames at 5 fps: 2.2 s from the first to the last, not as fast as it decodes
    assert not create_source(CameraConfig(type="opencv", device="0")).finite  # a camera never ends


def test_the_daemon_judges_every_frame_of_a_video_and_stops_at_its_end(plain_video, fake_detector, fake_embedder,
                                                                      tmp_path):
    cfg = Config.default()
    with DoorDaemon(cfg, source=create_source(CameraConfig(type="opencv", device=str(plain_video))),
                    lock=LogLock(unlock_seconds=0.1), pipeline=FacePipeline(fake_detector, fake_embedder, NO_QUALITY_GATE),
                    gallery=_gallery(tmp_path, fake_embedder), notifier=NullNotifier()) as daemon:
        stats = daemon.run(stop_when_finished=daemon.source.finite)
        assert daemon.lock.is_locked
    assert stats.frames == 12  # none skipped by the newest-frame grabber


def test_a_source_that_ends_where_a_camera_was_expected_exits_for_a_restart(plain_video, fake_detector,
                                                                          fake_embedder, tmp_path):
    with DoorDaemon(Config.default(), source=OpenCVSource(str(plain_video), paced=False), lock=LogLock(unlock_seconds=0.1),
                    pipeline=FacePipeline(fake_detector, fake_embedder, NO_QUALITY_GATE),
                    gallery=_gallery(tmp_path, fake_embedder), notifier=NullNotifier()) as daemon:
        t0 = time.monotonic()
        with pytest.raises(CameraError, match="ended; exiting for a restart"):
            daemon.run(stop_when_finished=False)
        assert time.monotonic() - t0 < 10 and daemon.lock.is_locked


def _gallery(tmp_path, fake_embedder):
    from facegate.edge.gallery import Gallery
    from facegate.edge.types import Embedding

    gallery = Gallery(tmp_path / "g.db")
    gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    return gallery


def test_facegate_run_plays_a_video_camera_to_its_end_and_exits_0(tmp_path):
    """The service's own path: `facegate run` on a config whose camera is a video file."""
    frames = render_shots([Shot(None, 3, "empty"), Shot("astronaut", 12, "visit", face_px=(130.0, 160.0)),
                           Shot(None, 3, "empty")], seed=7)
    video = write_video(tmp_path / "door.mp4", [f.image for f in frames], fps=4.0)
    gallery = tmp_path / "state" / "gallery.db"
    cfg = tmp_path / "facegate.toml"
    cfg.write_text(f"""
[camera]
type = "opencv"
device = "{video}"

[lock]
type = "log"
unlock_seconds = 0.2

[storage]
gallery = "{gallery}"

[daemon]
watchdog = false

[liveness]
enabled = false  # the frames are pastes of one portrait: planar, as a photo
""")
    from facegate.edge.cli import main

    assert main(["enroll", "eileen", str(portrait_path("astronaut")), "--gallery", str(gallery)]) == 0
    t0 = time.monotonic()
    try:
        run = subprocess.run([sys.executable, "-c", "import sys; from facegate.edge.cli import main; sys.exit(main())",
                              "run", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("facegate run did not end at the end of the video")
    took = time.monotonic() - t0
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    stopped = re.search(r"stopped: locked; (\d+) frames, (\d+) faces judged, (\d+) grants", run.stderr)
    assert stopped, run.stderr[-2000:]
    judged_frames, _, grants = map(int, stopped.groups())
    assert judged_frames >= len(frames) - 2  # 18 frames at 4 fps: the door keeps up, at most a frame or two dropped
    assert grants == 1
    assert took >= (len(frames) - 1) / 4.0 * 0.9  # played at its own rate, not decoded in a blink
