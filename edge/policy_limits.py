"""Brute-force limits of the door's policy: rejected judged faces lock the door out, longer each time.

Counting *judged faces*, not visits: a slideshow of stranger photos in front
of the camera is many faces in one "visit", and counting 10-second visit
slices let 8 minutes of it through with only 23 lockouts. Every judged face
that matches nobody is counted; ``max_denied`` of them within
``lockout_window_seconds`` start a lockout. Each lockout that starts less
than ``lockout_reset_seconds`` after the previous one ended is
``lockout_escalation`` times longer, up to ``max_lockout_seconds``; a quiet
``lockout_reset_seconds`` brings the length back to ``lockout_seconds``.

How many faces are judged at all is bounded by the policy's rate limit
(``min_interval_seconds`` between judged faces), so the attempts per hour an
attacker gets are bounded whatever the camera's frame rate.

The rule for an enrolled person during a lockout (applied by
:class:`~facegate.edge.policy.DecisionPolicy`) is documented in
docs/reliability.md: only a *strong* match opens, one whose distance is
within the threshold for a 100 times lower identification false-match rate,
on all ``n`` of the last ``n`` judged faces; everything else is ``lockout``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["FaceLockout", "LockoutStart"]


@dataclass(frozen=True)
class LockoutStart:
    """A lockout that has just begun: how long and which escalation level (1 = first)."""

    seconds: float
    level: int
    rejected: int  # the rejected faces that started it


class FaceLockout:
    """Counts rejected judged faces and locks out with escalation. Pure: the caller passes ``now``.

    ``lockout_seconds = 0`` disables lockouts (faces are still counted).
    """

    def __init__(self, max_denied: int, window_seconds: float, lockout_seconds: float,
                 escalation: float = 2.0, max_lockout_seconds: float = 900.0,
                 reset_seconds: float = 3600.0) -> None:
        self.max_denied = int(max_denied)
        self.window_seconds = float(window_seconds)
        self.lockout_seconds = float(lockout_seconds)
        self.escalation = float(escalation)
        self.max_lockout_seconds = max(float(max_lockout_seconds), self.lockout_seconds)
        self.reset_seconds = float(reset_seconds)
        self._rejected: deque[float] = deque()
        self._until: float | None = None
        self._last_end: float | None = None
        self.level = 0  # escalation level of the current or last lockout
        self.lockouts = 0  # lockouts started, in all
        self.rejected_total = 0  # rejected judged faces, in all

    def carry_from(self, other: FaceLockout) -> None:
        """Take over another counter's state (a reloaded config must not lift a running lockout)."""
        self._rejected = deque(other._rejected)
        self._until, self._last_end = other._until, other._last_end
        self.level, self.lockouts, self.rejected_total = other.level, other.lockouts, other.rejected_total

    @property
    def count(self) -> int:
        """Rejected faces currently counted towards the next lockout."""
        return len(self._rejected)

    def expire(self, now: float) -> None:
        """End a lockout that is over, forget old faces, and cool the escalation down."""
        if self._until is not None and now >= self._until:
            self._last_end, self._until = self._until, None
        while self._rejected and now - self._rejected[0] > self.window_seconds:
            self._rejected.popleft()
        if self._until is None and self._last_end is not None and now - self._last_end >= self.reset_seconds:
            self.level, self._last_end = 0, None

    def remaining(self, now: float) -> float:
        return 0.0 if self._until is None else max(0.0, self._until - now)

    def length(self, level: int) -> float:
        """Lockout seconds at escalation ``level`` (1 = first)."""
        return min(self.max_lockout_seconds, self.lockout_seconds * self.escalation ** max(0, level - 1))

    def reject(self, now: float) -> LockoutStart | None:
        """Count one rejected judged face; the lockout it starts, if it completes the count."""
        self.rejected_total += 1
        if self._until is not None:
            return None
        self._rejected.append(now)
        while self._rejected and now - self._rejected[0] > self.window_seconds:
            self._rejected.popleft()
        if self.lockout_seconds <= 0 or len(self._rejected) < self.max_denied:
            return None
        self.level += 1
        self.lockouts += 1
        seconds = self.length(self.level)
        self._until = now + seconds
        counted = len(self._rejected)
        self._rejected.clear()
        return LockoutStart(seconds, self.level, counted)
