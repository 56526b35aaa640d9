"""Face detectors behind one protocol; ``create_detector`` picks one by ``[detector] type``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import FaceDetector

if TYPE_CHECKING:
    from ..config import DetectorConfig

__all__ = ["DETECTORS", "FaceDetector", "create_detector"]


def _mtcnn(cfg: DetectorConfig) -> FaceDetector:
    from .mtcnn import MtcnnDetector  # onnxruntime sessions: built only when asked for

    return MtcnnDetector(min_face_size=cfg.min_face_size, threads=cfg.threads, work_face_px=cfg.work_face_px)


#: ``[detector] type`` -> constructor from the config table.
DETECTORS: dict[str, Callable[[DetectorConfig], FaceDetector]] = {"mtcnn": _mtcnn}


def create_detector(cfg: DetectorConfig) -> FaceDetector:
    """The detector a ``[detector]`` config table describes."""
    try:
        make = DETECTORS[cfg.type]
    except KeyError:
        raise ConfigError(f"detector.type: expected one of {', '.join(DETECTORS)}, got {cfg.type!r}") from None
    return make(cfg)
