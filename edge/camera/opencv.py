"""``cv2.VideoCapture`` sources: webcams, device paths, files, network streams."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CameraError, CameraUnavailable
from ..imageio import to_bgr
from .base import _BaseSource

log = logging.getLogger(__name__)


def _is_live(target: int | str) -> bool:
    if isinstance(target, int):
        return True
    return "://" in target or target.startswith("/dev/")


class OpenCVSource(_BaseSource):
    """``cv2.VideoCapture`` on a device index, device path, file or RTSP/HTTP URL.

    A live source that stops delivering raises :class:`CameraError` (so the
    grabber reconnects); a file returns None at its end.
    """

    def __init__(self, target: int | str, size: tuple[int, int] | None = None, fps: float | None = None,
                 api_preference: int | None = None, name: str | None = None) -> None:
        super().__init__()
        if isinstance(target, str) and target.strip().isdigit():
            target = int(target)
        self.target: int | str = target
        self.size = size
        self.fps = fps
        self.api_preference = api_preference
        self.live = _is_live(target)
        self.name = name or f"opencv:{target}"
        self._cap: Any = None

    def _open(self) -> None:
        import cv2

        if not self.live and not Path(str(self.target)).exists():
            raise CameraUnavailable(f"{self.name}: no such file: {self.target}")
        cap = cv2.VideoCapture(self.target) if self.api_preference is None else cv2.VideoCapture(
            self.target, self.api_preference)
        if not cap.isOpened():
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
        self._cap = cap
        log.info("%s: opened (%dx%d)", self.name, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                 int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def _read(self) -> np.ndarray | None:
        try:
            ok, image = self._cap.read()
        except Exception as exc:  # cv2.error from a broken backend
            raise CameraError(f"{self.name}: read failed: {exc}") from exc
        if not ok or image is None:
            if self.live:
                raise CameraError(f"{self.name}: no frame from {self.target!r} (disconnected?)")
            return None  # end of file
        return to_bgr(image)

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
