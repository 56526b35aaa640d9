"""systemd's watchdog, fed only while the camera delivers frames.

Feeding WATCHDOG=1 from the main loop whatever the camera does made a wedged
camera (a ``read()`` that blocks in a driver, a stream that stalls) look
healthy forever. Here the loop asks :meth:`FrameWatchdog.feed` with the time
of the newest frame; a frame older than ``frame_timeout`` stops the feeding,
so systemd restarts the service after ``WatchdogSec``. The gaps between feeds
are kept, so the soak benchmark can report them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .notify import Notifier

log = logging.getLogger(__name__)


class FrameWatchdog:
    """Sends WATCHDOG=1 at most every ``interval`` seconds, and only while frames are fresh.

    :param enabled: False sends nothing (no ``WatchdogSec=``), but gaps are still measured.
    :param frame_timeout: a newest frame older than this means the camera is stuck.
    :param interval: the shortest time between two feeds (systemd wants one per ``WatchdogSec/2``).
    """

    def __init__(self, notifier: Notifier, *, enabled: bool = True, frame_timeout: float = 5.0,
                 interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.enabled = enabled
        self.frame_timeout = float(frame_timeout)
        self.interval = float(interval)
        self._clock = clock
        self.started = clock()
        self.last_feed: float | None = None
        self.feeds = 0
        self.max_gap = 0.0  # the longest time between two feeds (or start and the first)
        self.starved = False  # True while frames are too old to feed

    def feed(self, last_frame: float | None) -> bool:
        """Feed if the newest frame (monotonic time, None: none yet) is fresh; True if fed now.

        Before the first frame the start of the loop counts as one, so a camera
        that takes a moment to open is not a fault, but one that never
        delivers is.
        """
        now = self._clock()
        newest = self.started if last_frame is None else max(last_frame, self.started)
        fresh = now - newest <= self.frame_timeout
        if not fresh:
            if not self.starved:
                log.error("no camera frame for %.1f s: watchdog no longer fed", now - newest)
            self.starved = True
            return False
        if self.starved:
            log.warning("camera frames again: watchdog fed")
            self.starved = False
        previous = self.started if self.last_feed is None else self.last_feed
        if self.last_feed is not None and now - self.last_feed < self.interval:
            return False
        self.max_gap = max(self.max_gap, now - previous)
        self.last_feed = now
        self.feeds += 1
        if self.enabled:
            self.notifier.notify("WATCHDOG=1")
        return True

    def stale_for(self, last_frame: float | None) -> float:
        """Seconds since the newest frame (or since start when none came yet)."""
        newest = self.started if last_frame is None else max(last_frame, self.started)
        return self._clock() - newest
