"""``cv2.VideoCapture`` sources: webcams, device paths, files, network streams."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CameraError, CameraUnavailable
from ..imageio import to_bgr
from .base import _BaseSource
from .pacing import FramePacer

log = logging.getLogger(__name__)


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """Hold back OpenCV's own ``[ WARN ]`` lines (written straight to stderr) while a capture is probed.

    A camera that cannot be opened is reported once, in our words and with the
    fix; OpenCV's backend chatter stays visible with ``--debug``.
    """
    import cv2

    quiet = not logging.getLogger("facegate").isEnabledFor(logging.DEBUG)
    levels = getattr(getattr(cv2, "utils", None), "logging", None)
    if not quiet or levels is None:
        yield
        return
    previous = levels.getLogLevel()
    levels.setLogLevel(levels.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        levels.setLogLevel(previous)


def _is_live(target: int | str) -> bool:
    if isinstance(target, int):
        return True
    return "://" in target or target.startswith("/dev/")


class OpenCVSource(_BaseSource):
    """``cv2.VideoCapture`` on a device index, device path, file or RTSP/HTTP URL.

    A live source that stops delivering raises :class:`CameraError` (so the
    grabber reconnects); a file returns None at its end, and is played at its
    own frame rate (``fps`` when the file does not say; ``paced=False``: as
    fast as it decodes), so that a recording stands in for a camera.
    """

    def __init__(self, target: int | str, size: tuple[int, int] | None = None, fps: float | None = None,
                 api_preference: int | None = None, name: str | None = None, paced: bool = True) -> None:
        super().__init__()
        if isinstance(target, str) and target.strip().isdigit():
            target = int(target)
        self.target: int | str = target
        self.size = size
        self.fps = fps
        self.api_preference = api_preference
        self.live = _is_live(target)
        self.name = name or f"opencv:{target}"
        self.paced = paced
        self._pacer = FramePacer(None)
        self._cap: Any = None

    @property
    def finite(self) -> bool:
        """A file ends (the daemon stops with it); a camera or stream does not."""
        return not self.live

    def _open(self) -> None:
        import cv2

        if not self.live and not Path(str(self.target)).exists():
            raise CameraUnavailable(f"{self.name}: no such file: {self.target}")
        with quiet_opencv():
            cap = cv2.VideoCapture(self.target) if self.api_preference is None else cv2.VideoCapture(
                self.target, self.api_preference)
            opened = cap.isOpened()
        if not opened:
            cap.release()
            raise CameraUnavailable(f"{self.name}: cannot open {self.target!r}")
        if self.live:
            # Keep the driver's queue short: old frames are worthless to a door.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self.size:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        elif self.paced:
            self._pacer = FramePacer(self._file_fps(cap))
        self._cap = cap
        log.info("%s: opened (%dx%d)", self.name, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                 int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def _file_fps(self, cap: Any) -> float | None:
        """The rate the file was recorded at; else ``fps``; else None (as fast as it decodes, said once)."""
        import cv2

        rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if math.isfinite(rate) and 0 < rate <= 240:
            return rate
        if self.fps:
            return float(self.fps)
        log.warning("%s: the file gives no frame rate and [camera] fps is not set: played as fast as it decodes, "
                    "so the door will skip frames", self.name)
        return None

    def _read(self) -> np.ndarray | None:
        try:
            ok, image = self._cap.read()
        except Exception as exc:  # cv2.error from a broken backend
            raise CameraError(f"{self.name}: read failed: {exc}") from exc
        if not ok or image is None:
            if self.live:
                raise CameraError(f"{self.name}: no frame from {self.target!r} (disconnected?)")
            return None  # end of file
        if not self.live:
            self._pacer.wait()
        return to_bgr(image)

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
