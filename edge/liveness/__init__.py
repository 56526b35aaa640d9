"""Liveness: is the face at the door a live head, or a photo or a screen?

One protocol (:class:`LivenessCheck`), real checks behind it picked by their
``type`` key in ``[liveness] checks``, and a stage (:class:`Liveness`) that
the decision policy consults before any grant. See docs/liveness.md for the
figures and for what these checks cannot stop.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from .base import FaceSample, LivenessCheck, LivenessResult, Verdict
from .config import CHECK_TYPES, LivenessConfig
from .planar import PlanarMotionCheck
from .screen import ScreenGridCheck
from .stage import Liveness, make_sample

__all__ = [
    "CHECKS",
    "FaceSample",
    "Liveness",
    "LivenessCheck",
    "LivenessConfig",
    "LivenessResult",
    "Verdict",
    "create_check",
    "create_liveness",
    "make_sample",
]

#: ``[liveness] checks`` entry -> constructor.
CHECKS: dict[str, Callable[[LivenessConfig], LivenessCheck]] = {
    PlanarMotionCheck.type_key: PlanarMotionCheck,
    ScreenGridCheck.type_key: ScreenGridCheck,
}
assert set(CHECKS) == set(CHECK_TYPES)


def create_check(type_key: str, config: LivenessConfig | None = None) -> LivenessCheck:
    """One check by its ``type`` key."""
    try:
        make = CHECKS[type_key]
    except KeyError:
        raise ConfigError(f"liveness.checks: expected one of {', '.join(CHECKS)}, got {type_key!r}") from None
    return make(config or LivenessConfig())


def create_liveness(config: LivenessConfig | None) -> Liveness | None:
    """The stage a ``[liveness]`` table describes; None when it is turned off."""
    config = config or LivenessConfig()
    if not config.enabled:
        return None
    return Liveness([create_check(k, config) for k in config.checks], config)
