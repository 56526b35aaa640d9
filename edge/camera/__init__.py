"""Frame sources: the Pi camera, OpenCV captures and replays, behind one protocol.

``create_source`` picks the implementation from ``[camera] type`` through
:data:`SOURCES`, so a new camera is one entry there, not another branch.
:class:`LatestFrameGrabber` keeps only the newest frame for the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import CameraUnavailable, ConfigError
from .base import FrameSource
from .grabber import LatestFrameGrabber
from .opencv import OpenCVSource
from .picamera2 import Picamera2Source
from .replay import IMAGE_SUFFIXES, ReplaySource

if TYPE_CHECKING:
    from ..config import CameraConfig

__all__ = [
    "CAMERA_FIX",
    "IMAGE_SUFFIXES",
    "SOURCES",
    "FrameSource",
    "LatestFrameGrabber",
    "OpenCVSource",
    "Picamera2Source",
    "ReplaySource",
    "create_source",
]


#: What to do when no camera opens: said by ``facegate doctor`` and by every command that needs the camera.
CAMERA_FIX = ("check the ribbon cable and [camera] type/device; rpicam-hello --list-cameras lists what libcamera "
              "sees, v4l2-ctl --list-devices what OpenCV can open")


def _picamera2(cfg: CameraConfig) -> FrameSource:
    lores = None if cfg.lores_width is None else (cfg.lores_width, cfg.lores_height or cfg.lores_width * 3 // 4)
    return Picamera2Source(size=(cfg.width, cfg.height), fps=cfg.fps, lores_size=lores)


def _opencv(cfg: CameraConfig) -> FrameSource:
    return OpenCVSource(cfg.device, size=(cfg.width, cfg.height), fps=cfg.fps)


def _replay(cfg: CameraConfig) -> FrameSource:
    if cfg.path is None:
        raise CameraUnavailable('camera.type = "replay" needs camera.path')
    return ReplaySource(cfg.path, fps=cfg.fps, loop=cfg.loop)


#: ``[camera] type`` -> constructor from the config table.
SOURCES: dict[str, Callable[[CameraConfig], FrameSource]] = {
    "picamera2": _picamera2,
    "opencv": _opencv,
    "replay": _replay,
}


def create_source(cfg: CameraConfig) -> FrameSource:
    """Build the frame source a ``[camera]`` config table describes."""
    try:
        make = SOURCES[cfg.type]
    except KeyError:
        raise ConfigError(f"camera.type: expected one of {', '.join(SOURCES)}, got {cfg.type!r}") from None
    return make(cfg)
