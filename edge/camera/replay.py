"""Replays of folders, video files and arrays: deterministic input for tests, benchmarks, the demo."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import CameraUnavailable, ImageError
from ..imageio import load_image, to_bgr
from .base import _BaseSource
from .opencv import OpenCVSource
from .pacing import FramePacer

log = logging.getLogger(__name__)

#: File suffixes a replay folder is scanned for (case-insensitive).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp"})


class ReplaySource(_BaseSource):
    """Replays a folder of images, a video file or a list of arrays.

    For tests, benchmarks and the demo: deterministic input through the same
    code path as a camera. With ``fps`` the frames are paced to that rate
    (monotonic clock, no drift accumulation), as a camera would deliver them.
    """

    def __init__(self, path: str | Path | Iterable[np.ndarray], fps: float | None = None, loop: bool = False,
                 name: str | None = None) -> None:
        super().__init__()
        if fps is not None and fps <= 0:
            raise ValueError("fps must be positive")
        self.fps = fps
        self.loop = loop
        self._arrays: list[np.ndarray] | None = None
        self._stream: Iterator[np.ndarray] | None = None
        self._path: Path | None = None
        if isinstance(path, (str, Path)):
            self._path = Path(path)
            self.name = name or f"replay:{self._path}"
        elif isinstance(path, Sequence):
            self._arrays = list(path)
            self.name = name or f"replay:<{len(self._arrays)} arrays>"
        else:  # an iterator: frames made on demand, played once, never all in memory
            if loop:
                raise ValueError("an iterator of frames cannot loop")
            self._stream = iter(path)
            self.name = name or "replay:<stream>"
        self._files: list[Path] = []
        self._video: OpenCVSource | None = None
        self._pos = 0
        self._pacer = FramePacer(fps)

    @property
    def finite(self) -> bool:
        """A replay without loop ends: the daemon stops with it."""
        return not self.loop

    def _open(self) -> None:
        self._pos = 0
        self._pacer.reset()
        if self._arrays is not None or self._stream is not None:
            return
        assert self._path is not None
        if self._path.is_dir():
            self._files = sorted(p for p in self._path.iterdir()
                                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise CameraUnavailable(f"{self.name}: no image files in {self._path}")
        elif self._path.is_file():
            self._video = OpenCVSource(str(self._path), name=self.name, paced=False)  # paced here, at self.fps
            self._video.open()
        else:
            raise CameraUnavailable(f"{self.name}: no such file or folder: {self._path}")

    def _close(self) -> None:
        video, self._video = self._video, None
        if video is not None:
            video.close()

    def _read(self) -> np.ndarray | None:
        image = self._next_image()
        if image is not None:
            self._pacer.wait()
        return image

    def _next_image(self) -> np.ndarray | None:
        if self._video is not None:
            frame = self._video.read()
            if frame is None and self.loop and self._pos > 0:
                self._video.close()
                self._video.open()
                self._pos = 0
                frame = self._video.read()
            if frame is None:
                return None
            self._pos += 1
            return frame.image
        if self._stream is not None:
            image = next(self._stream, None)
            return None if image is None else to_bgr(image)
        if self._arrays is not None:
            if not self._arrays:
                return None
            if self._pos >= len(self._arrays):
                if not self.loop:
                    return None
                self._pos = 0
            image = self._arrays[self._pos]
            self._pos += 1
            return to_bgr(image)
        # A folder: skip (and forget) unreadable files, so a loop logs each once.
        while self._files:
            if self._pos >= len(self._files):
                if not self.loop:
                    return None
                self._pos = 0
            path = self._files[self._pos]
            try:
                image = load_image(path)
            except ImageError as exc:
                log.warning("%s: skipping unreadable image: %s", self.name, exc)
                del self._files[self._pos]
                continue
            self._pos += 1
            return image
        return None  # every file was unreadable
