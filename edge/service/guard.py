"""The stall guard: a door left open by a stuck main loop is locked from another thread."""

from __future__ import annotations

import logging
import threading
import time

from ..lock import Lock

log = logging.getLogger(__name__)


class StallGuard:
    """Locks the door if the main loop stops beating while it is open.

    A thread of its own, so a frame stuck in native code (inference, a camera
    driver) cannot keep the door open; systemd's watchdog then restarts us.
    """

    def __init__(self, lock: Lock, stall_seconds: float) -> None:
        self._lock = lock
        self.stall_seconds = stall_seconds
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self.tripped = 0
        self._thread = threading.Thread(target=self._run, name="stall-guard", daemon=True)

    def start(self) -> StallGuard:
        self._thread.start()
        return self

    def beat(self) -> None:
        self._beat = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.stall_seconds / 4)):
            if time.monotonic() - self._beat > self.stall_seconds and not self._lock.is_locked:
                log.error("main loop stalled for %.1f s: locking the door", time.monotonic() - self._beat)
                self.tripped += 1
                try:
                    self._lock.lock()
                except Exception:  # the guard must never die
                    log.exception("stall guard could not lock")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
