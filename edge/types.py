"""The records that flow between pipeline stages.

Each arrow of the device data flow (frame -> detection -> crop -> embedding ->
match -> decision) is one small frozen dataclass, so every stage can be tested
alone and every answer can be explained afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Landmark order used everywhere: as seen in the image (not anatomically).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Frame:
    """One camera image: BGR uint8 (H, W, 3), and when it was taken."""

    image: np.ndarray
    timestamp: float  # time.monotonic() seconds
    index: int = 0
    source: str = ""


@dataclass(frozen=True)
class Detection:
    """A face in frame coordinates: box (x1, y1, x2, y2), score, 5 landmarks.

    ``landmarks`` is a (5, 2) float32 array of (x, y) in LANDMARK_NAMES order.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """Geometric mean of width and height: the face's size in pixels."""
        return float(np.sqrt(max(self.width, 0.0) * max(self.height, 0.0)))

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


@dataclass(frozen=True)
class Quality:
    """How usable a face is; thresholds live in :class:`QualityThresholds`."""

    face_px: float  # inter-ocular-scaled face size in frame pixels
    sharpness: float  # variance of the Laplacian on the aligned grey crop
    brightness: float  # mean grey level of the crop's central region, 0..255
    yaw: float  # frontal-pose estimate from landmarks, about -1..1 (0 = frontal)
    pitch: float  # about -1..1 (0 = level)
    reasons: tuple[str, ...] = ()  # empty when the face passes

    @property
    def ok(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class FaceCrop:
    """An aligned 112x112 BGR crop with the detection it came from."""

    image: np.ndarray
    detection: Detection
    quality: Quality


@dataclass(frozen=True)
class Embedding:
    """An L2-normalised float32 vector, stamped with the model that made it."""

    vector: np.ndarray
    model_id: str


@dataclass(frozen=True)
class Match:
    """Result of comparing one embedding with the gallery (1:1 or 1:K).

    Distances are Euclidean between L2-normalised vectors (0 = identical,
    2 = opposite). ``name`` is None when nobody is close enough.
    """

    name: str | None
    distance: float
    threshold: float
    model_id: str
    best_name: str | None = None  # nearest person even when rejected
    runner_up: str | None = None
    runner_up_distance: float | None = None
    candidates: int = 0  # people compared

    @property
    def accepted(self) -> bool:
        return self.name is not None

    @property
    def margin(self) -> float | None:
        """How much nearer the best person is than the runner-up."""
        if self.runner_up_distance is None:
            return None
        return self.runner_up_distance - self.distance


@dataclass(frozen=True)
class Decision:
    """What the door did with a frame, and why. Kept as an audit event."""

    timestamp: float  # wall-clock seconds (time.time())
    outcome: str  # "grant", "deny", "skip", "pending", "cooldown", "lockout"
    name: str | None
    distance: float | None
    threshold: float | None
    model_id: str | None
    reason: str = ""
    frames_used: int = 0
    latency_ms: float | None = None
    extra: dict = field(default_factory=dict)
