"""The liveness protocol: is the face in front of the door a live head?

A check judges the *sequence* of face samples of one decision (one person's
frames in one visit), not a single frame: a photo and a head look alike in any
one frame and differ in how they move. Each check answers ``live``, ``spoof``
or ``unsure`` (not enough evidence yet); :class:`~.stage.Liveness` combines
them so that any ``spoof`` denies and only "every check says live" lets the
policy grant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["FaceSample", "LivenessCheck", "LivenessResult", "Verdict"]


class Verdict(StrEnum):
    LIVE = "live"
    SPOOF = "spoof"
    UNSURE = "unsure"  # keep watching; never a grant


@dataclass(frozen=True)
class FaceSample:
    """What liveness sees of one face frame.

    ``landmarks`` are the detector's 5 points (x, y) in frame pixels, in
    :data:`~facegate.edge.types.LANDMARK_NAMES` order. ``patch`` is the grey
    centre of the face at the frame's own resolution (no resampling: image
    cues such as a screen's pixel grid live in the finest detail), cut only
    when a check asks for it; ``origin`` is its top-left corner in the frame.
    """

    t: float  # monotonic seconds
    landmarks: np.ndarray
    box: tuple[float, float, float, float]
    patch: np.ndarray | None = None
    origin: tuple[int, int] = (0, 0)
    frame_size: tuple[int, int] = (640, 480)  # (width, height)

    @property
    def frame_width(self) -> int:
        return self.frame_size[0]

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))


@dataclass(frozen=True)
class LivenessResult:
    """One check's (or the stage's) answer, with the reason the audit keeps."""

    verdict: Verdict
    check: str
    reason: str
    score: float | None = None


@runtime_checkable
class LivenessCheck(Protocol):
    """Judges a face-sample sequence. Stateless: the same samples give the same answer."""

    type_key: str
    #: whether samples must carry a grey ``patch`` of the face
    needs_patch: bool

    def judge(self, samples: Sequence[FaceSample]) -> LivenessResult:
        """``live`` only on enough evidence; ``unsure`` while it is lacking."""
        ...
