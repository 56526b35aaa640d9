"""The Pi camera module through picamera2 (libcamera), main and lores streams."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import BackendUnavailable, CameraError, CameraUnavailable
from ..imageio import to_bgr
from .base import _BaseSource

log = logging.getLogger(__name__)

PICAMERA2_HINT = (
    "picamera2 is not installed in this Python environment: install it with "
    "`sudo apt install python3-picamera2` (it is not usable from PyPI) and create "
    "the virtualenv with `python3 -m venv --system-site-packages` so it can see it"
)


def lores_to_bgr(yuv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BGR of a YUV420 (I420) lores buffer: (h * 3 / 2, stride) bytes, rows maybe padded."""
    import cv2

    w, h = size
    return cv2.cvtColor(np.ascontiguousarray(yuv[: h * 3 // 2, :w]), cv2.COLOR_YUV2BGR_I420)


class Picamera2Source(_BaseSource):
    """The Pi camera module through picamera2 (libcamera).

    picamera2 is only installable from Raspberry Pi OS's apt repository, so it
    is imported inside :meth:`open`: importing this module never needs it.

    With ``lores_size`` the ISP also scales each frame down into a second,
    "lores" stream (YUV420, the only format the Pi's lores stream has): the
    detector runs on it, the crop is cut from ``main`` (picamera2's
    ``opencv_face_detect_2`` example), and no CPU time goes into shrinking.
    """

    def __init__(self, size: tuple[int, int] = (640, 480), fps: float | None = None, camera_num: int = 0,
                 buffer_count: int = 4, name: str | None = None,
                 lores_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        # YUV420 needs even dimensions; the ISP cannot scale up.
        self.lores_size = None if lores_size is None else (int(lores_size[0]) & ~1, int(lores_size[1]) & ~1)
        if self.lores_size is not None and (self.lores_size[0] > self.size[0] or self.lores_size[1] > self.size[1]):
            raise CameraError(f"lores size {self.lores_size} must not exceed the main size {self.size}")
        self.fps = fps
        self.camera_num = camera_num
        self.buffer_count = buffer_count
        self.name = name or f"picamera2:{camera_num}"
        self._cam: Any = None

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise BackendUnavailable(PICAMERA2_HINT) from exc
        try:
            cam = Picamera2(self.camera_num)
        except Exception as exc:  # IndexError/RuntimeError when no camera is attached
            raise CameraUnavailable(f"{self.name}: cannot open the camera: {exc}") from exc
        try:
            # libcamera names packed formats by their little-endian word, so
            # "RGB888" is stored B, G, R in memory: capture_array() already
            # gives the BGR order OpenCV and the rest of facegate expect (the
            # picamera2 manual, appendix on pixel formats). No conversion here.
            controls = {"FrameRate": float(self.fps)} if self.fps else {}
            streams = {"main": {"size": self.size, "format": "RGB888"}}
            if self.lores_size is not None:
                streams["lores"] = {"size": self.lores_size, "format": "YUV420"}
            config = cam.create_video_configuration(
                **streams,
                controls=controls,
                buffer_count=self.buffer_count,
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:
            try:
                cam.close()
            except Exception:
                pass
            raise CameraUnavailable(f"{self.name}: cannot start the camera: {exc}") from exc
        self._cam = cam
        log.info("%s: started at %dx%d", self.name, *self.size)

    def _read(self) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        try:
            if self.lores_size is None:
                array = self._cam.capture_array("main")
            else:  # one request, both streams: the two images show the same instant
                (array, yuv), _ = self._cam.capture_arrays(["main", "lores"])
        except Exception as exc:
            raise CameraError(f"{self.name}: capture failed: {exc}") from exc
        # Strides may be padded; to_bgr makes it contiguous and drops an X channel.
        if self.lores_size is None:
            return to_bgr(array)
        return to_bgr(array), lores_to_bgr(yuv, self.lores_size)

    def _close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()
