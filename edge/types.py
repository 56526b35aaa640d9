"""The records that flow between pipeline stages.

Each arrow of the device data flow (frame -> detection -> crop -> embedding ->
match -> decision) is one small frozen dataclass, so every stage can be tested
alone and every answer can be explained afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np

from .errors import ConfigError

#: Landmark order used everywhere: as seen in the image (not anatomically).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Frame:
    """One camera image: BGR uint8 (H, W, 3), and when it was taken.

    ``lores`` is an optional smaller BGR copy of the same instant (picamera2's
    lores stream): the detector may run on it while crops come from ``image``.
    """

    image: np.ndarray
    timestamp: float  # time.monotonic() seconds
    index: int = 0
    source: str = ""
    lores: np.ndarray | None = None


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
class CropSpec:
    """The face crop an embedder needs; alignment cuts it once per face.

    ``kind`` "align5": a 5-point similarity transform onto the common
    template, scaled to ``size`` and shrunk about the crop centre by
    ``face_scale`` (below 1 leaves more margin around the face; 1.0 at 112 px
    is the classic 112x112 ArcFace crop). ``kind`` "box": a square-resized
    crop of the detector's box grown by ``margin`` of its size per side,
    clipped to the frame (FaceNet's own preprocessing). ``kind`` "region":
    the same grown box at the frame's own scale (shrunk only to fit ``size``,
    never stretched), for a reference that finds its own landmarks (dlib).
    """

    kind: Literal["align5", "box", "region"] = "align5"
    size: int = 112
    face_scale: float = 1.0
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("align5", "box", "region"):
            raise ConfigError(f"crop.kind: expected 'align5', 'box' or 'region', got {self.kind!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 16 <= self.size <= 1024:
            raise ConfigError(f"crop.size: expected an integer in 16..1024, got {self.size!r}")
        for name, lo, hi in (("face_scale", 0.25, 2.0), ("margin", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not lo <= value <= hi:
                raise ConfigError(f"crop.{name}: expected a number in {lo:g}..{hi:g}, got {value!r}")
        if self.kind == "align5" and self.margin:
            raise ConfigError("crop.margin: only for kind 'box' (align5 takes face_scale)")
        if self.kind != "align5" and self.face_scale != 1.0:
            raise ConfigError(f"crop.face_scale: only for kind 'align5' ({self.kind} takes margin)")


#: The classic aligned crop: what every shipped bundle and the training cache use.
ALIGN_112 = CropSpec()


@dataclass(frozen=True)
class FaceCrop:
    """One face, cut once as its embedder's :class:`CropSpec` asks, with its quality."""

    image: np.ndarray
    detection: Detection
    quality: Quality | None  # None when no quality was measured (embedding only)
    spec: CropSpec = ALIGN_112
    #: 2x3 affine map from frame pixels to crop pixels (None: not recorded).
    matrix: np.ndarray | None = None


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


class Outcome(StrEnum):
    """What the door made of one frame (a ``str``, so it compares with plain text)."""

    GRANT = "grant"
    DENY = "deny"
    PENDING = "pending"
    COOLDOWN = "cooldown"
    LOCKOUT = "lockout"
    SKIP = "skip"
    IDLE = "idle"

    @property
    def audited(self) -> bool:
        """Kept in the audit table (the rest only go to debug logs)."""
        return self in AUDITED_OUTCOMES


#: The outcomes the audit table keeps; per-frame pending/skip/idle/cooldown are debug logs only.
AUDITED_OUTCOMES = frozenset({Outcome.GRANT, Outcome.DENY, Outcome.LOCKOUT})


@dataclass(frozen=True)
class Decision:
    """What the door did with a frame, and why. Kept as an audit event."""

    timestamp: float  # wall-clock seconds (time.time())
    outcome: Outcome
    name: str | None
    distance: float | None
    threshold: float | None
    model_id: str | None
    reason: str = ""
    frames_used: int = 0
    latency_ms: float | None = None
    extra: dict = field(default_factory=dict)


class DoorState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class DoorEvent:
    """The door contact changed: audited beside decisions, in its own record."""

    timestamp: float  # wall-clock seconds (time.time())
    state: DoorState

    @property
    def outcome(self) -> str:
        """How the audit table's ``outcome`` column names it."""
        return f"door_{self.state}"
