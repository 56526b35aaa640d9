"""Deliver recorded frames at the rate they were recorded, as a camera would.

A file read as fast as the disk allows is not a camera: the newest-frame
grabber would drop almost every frame (a 210-frame clip judged as 5), and the
clip would be over before the first face was judged.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class FramePacer:
    """Sleeps so that successive frames leave ``1/fps`` apart (monotonic clock, no drift).

    A consumer that falls behind by more than one period restarts the
    schedule instead of bursting the frames it missed.
    """

    def __init__(self, fps: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if fps is not None and not fps > 0:
            raise ValueError("fps must be positive")
        self.fps = fps
        self._clock = clock
        self._sleep = sleep
        self._next_due: float | None = None

    def reset(self) -> None:
        self._next_due = None

    def wait(self) -> None:
        """Return when the next frame is due (at once for the first, or without a rate)."""
        if not self.fps:
            return
        period = 1.0 / self.fps
        now = self._clock()
        if self._next_due is None or now - self._next_due > period:
            self._next_due = now  # first frame, or we fell behind: do not burst
        elif self._next_due > now:
            self._sleep(self._next_due - now)
        self._next_due += period
