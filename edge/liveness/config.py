"""The ``[liveness]`` table: which checks run and how much evidence each needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..settings import check_fields, fail, setting

__all__ = ["CHECK_TYPES", "LivenessConfig"]

CHECK_TYPES = ("planar", "screen")


@dataclass(frozen=True)
class LivenessConfig:
    """Tunables of the liveness stage; the defaults are the measured ones (docs/liveness.md).

    Distances are in eye distances (the face's own scale), so they hold at
    any face size; angles in degrees.
    """

    #: Off only for synthetic footage (the demo): with it off a held-up photo opens the door.
    enabled: bool = True
    checks: tuple[Literal["planar", "screen"], ...] = ("planar", "screen")
    #: No live verdict this long after a person's first sample of a visit: deny.
    timeout_seconds: float = setting(6.0, gt=0, le=120)
    #: Newest samples kept per person and visit.
    max_samples: int = setting(40, ge=4, le=400)
    #: Horizontal field of view of the camera, to turn a face's shift into a change of viewing angle.
    camera_fov_degrees: float = setting(62.0, ge=20, le=180)
    # -- planar: a print or a screen moves as a plane, a head does not
    min_samples: int = setting(8, ge=6, le=100)
    #: Nose parallax (range of its 5-frame averaged track on the eye-mouth plane) that proves depth...
    live_parallax: float = setting(0.12, gt=0, le=1)
    #: ...when it is also this many times the track's own jitter.
    live_snr: float = setting(4.0, ge=1, le=100)
    #: Parallax below this (and within the jitter) after ``min_view_degrees`` of movement: a plane.
    planar_parallax: float = setting(0.08, gt=0, le=1)
    #: Change of viewing angle after which a real head shows parallax.
    min_view_degrees: float = setting(10.0, gt=0, le=90)
    #: A jump of the nose track larger than this (eye distances, between frames) starts a new track:
    #: a head moves smoothly (a fast turn: ~0.02), photos of two poses swapped do not.
    max_nose_step: float = setting(0.08, gt=0, le=10)
    # -- screen: a phone's pixel grid (or a print's halftone) aliases into sharp spectral peaks
    screen_samples: int = setting(3, ge=1, le=100)
    #: Peak-to-median ratio of the face's high-pass spectrum above which a frame shows a grid.
    screen_peak_ratio: float = setting(8.0, gt=1, le=1000)

    def __post_init__(self) -> None:
        check_fields(self, "liveness")
        if self.enabled and not self.checks:
            fail("liveness.checks", [], "at least one check while liveness.enabled = true")
        if len(set(self.checks)) != len(self.checks):
            fail("liveness.checks", list(self.checks), "each check once")
        if self.planar_parallax >= self.live_parallax:
            fail("liveness.planar_parallax", self.planar_parallax,
                 f"less than liveness.live_parallax ({self.live_parallax})")
