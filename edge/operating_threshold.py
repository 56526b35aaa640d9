"""The distance threshold the door runs at, from the model's measured FMR curve and the gallery's size.

A bundle's thresholds are *pair* thresholds: at ``by_fmr["1e-4"]`` one
stranger compared with one template matches with probability 1e-4. The door
compares a stranger with everybody: with N people enrolled the chance that
someone matches (the identification false-match rate) is about N times the
pair rate (0.27 % of LFW strangers matched someone of a 46-person gallery at
the 1e-4 pair threshold). So the door picks the pair threshold for
``identification_fmr / N`` and never runs looser than the configured (or the
model's default) threshold.

Between measured FMRs the threshold is interpolated linearly in log10(FMR);
below the lowest measured FMR it is extrapolated along the last segment.
The left tail of impostor distances falls faster than that line, so the
extrapolated threshold is stricter than needed: it costs genuine accepts, not
false ones.
"""

from __future__ import annotations

import logging
import math

from .embed.base import Thresholds
from .errors import ConfigError

__all__ = ["threshold_at_fmr", "operating_threshold", "strong_threshold", "unsafe_threshold_reason",
           "STRONG_FACTOR", "check_threshold_safety"]

log = logging.getLogger(__name__)

#: During a lockout only a match this many times less likely for a stranger opens (see policy_limits).
STRONG_FACTOR = 100.0


def _curve(thresholds: Thresholds) -> list[tuple[float, float]]:
    """(log10 FMR, threshold) points, by FMR ascending."""
    points = []
    for key, value in thresholds.by_fmr.items():
        try:
            fmr = float(key)
        except ValueError:
            continue
        if fmr > 0 and math.isfinite(value):
            points.append((math.log10(fmr), float(value)))
    return sorted(points)


def threshold_at_fmr(thresholds: Thresholds, fmr: float) -> float:
    """The pair threshold for a false-match rate ``fmr`` (interpolated, see the module docstring).

    A model with fewer than two measured points gives its lowest measured
    threshold (or its default): nothing to interpolate along.
    """
    if not fmr > 0:
        raise ValueError(f"fmr must be > 0, got {fmr!r}")
    pts = _curve(thresholds)
    if len(pts) < 2:
        return min([t for _, t in pts] + [thresholds.default])
    x = math.log10(fmr)
    if x <= pts[0][0]:
        (x0, y0), (x1, y1) = pts[0], pts[1]
    elif x >= pts[-1][0]:
        (x0, y0), (x1, y1) = pts[-2], pts[-1]
    else:
        i = next(i for i in range(1, len(pts)) if pts[i][0] >= x)
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
    y = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return max(0.0, y)


def operating_threshold(configured: float | None, thresholds: Thresholds, gallery_size: int,
                        identification_fmr: float | None) -> float:
    """The threshold for a gallery of ``gallery_size`` people: never looser than ``configured``/the default."""
    base = thresholds.default if configured is None else float(configured)
    if identification_fmr is None or gallery_size < 1:
        return base
    return min(base, threshold_at_fmr(thresholds, identification_fmr / gallery_size))


def strong_threshold(thresholds: Thresholds, gallery_size: int, identification_fmr: float | None,
                     operating: float) -> float:
    """A match ``STRONG_FACTOR`` times less likely for a stranger than the operating threshold allows."""
    fmr = (identification_fmr or 1e-3) / max(1, gallery_size) / STRONG_FACTOR
    return min(operating, threshold_at_fmr(thresholds, fmr))


def unsafe_threshold_reason(threshold: float | None, thresholds: Thresholds) -> str | None:
    """Why ``threshold`` would let strangers in (None when it is within what the model was measured at).

    The limit is the threshold at the highest FMR the model was measured at
    (its default when it has no curve): a looser one has an unknown, and
    quickly huge, false-match rate (2.0 matches everybody).
    """
    if threshold is None:
        return None
    pts = _curve(thresholds)
    loosest = max([t for _, t in pts] + [thresholds.default])
    if threshold <= loosest + 1e-9:
        return None
    at = max(pts, key=lambda p: p[1]) if pts else None
    where = f"at FMR {10 ** at[0]:.0e}" if at else "its default"
    return (f"match.threshold = {threshold:g} is looser than the model's threshold {where} ({loosest:.3f}): "
            "strangers would be let in; set match.allow_unsafe_threshold = true to run it anyway")


def check_threshold_safety(threshold: float | None, thresholds: Thresholds, allow_unsafe: bool) -> None:
    """Raise ConfigError for a dangerous threshold unless the override is set (then only warn)."""
    reason = unsafe_threshold_reason(threshold, thresholds)
    if reason is None:
        return
    if allow_unsafe:
        log.warning("%s (allowed by match.allow_unsafe_threshold)", reason.split(";")[0])
        return
    err = ConfigError(reason)
    err.key, err.value = "match.threshold", threshold
    raise err
