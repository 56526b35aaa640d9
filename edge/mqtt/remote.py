"""Remote unlock over MQTT: off by default, and narrow when on.

Turning it on means: whoever can publish ``UNLOCK`` on the door's command
topic can open the door, from anywhere the broker is reachable. So the door
accepts it only when (all of) remote unlock is on in its config, its own
connection is TLS and authenticated with a username (the broker's ACL decides
who may write the topic), the message is not retained (a retained UNLOCK
would open the door again at every reconnect), and fewer than
``remote_unlock_max`` remote unlocks happened in the last
``remote_unlock_window_seconds``. An accepted UNLOCK takes the door's own lock
path: the same pulse and relock timer, audited as a grant with source "mqtt".
``LOCK`` is always accepted: it can only make the door safer.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import FacegateError
from .link import Incoming

__all__ = ["RemoteCommands", "Verdict"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    command: str
    accepted: bool
    reason: str


class RemoteCommands:
    """Judges each command message; ``unlock`` and ``lock`` are the daemon's own lock path."""

    def __init__(self, *, enabled: bool, max_unlocks: int, window_seconds: float,
                 unlock: Callable[[], None], lock: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.max_unlocks = max_unlocks
        self.window_seconds = window_seconds
        self._unlock, self._lock, self._clock = unlock, lock, clock
        self._recent: deque[float] = deque()

    def handle(self, msg: Incoming) -> Verdict:
        command = msg.payload.decode("utf-8", "replace").strip()[:16]
        verdict = self._judge(command, msg)
        (log.warning if not verdict.accepted else log.info)(
            "mqtt command %r %s: %s", command, "accepted" if verdict.accepted else "REFUSED", verdict.reason)
        return verdict

    def _judge(self, command: str, msg: Incoming) -> Verdict:
        if msg.retain:
            return Verdict(command, False, "retained commands are refused (they would replay at every reconnect)")
        if command == "LOCK":
            return self._run(command, self._lock, "locked")
        if command != "UNLOCK":
            return Verdict(command, False, "unknown command (expected UNLOCK or LOCK)")
        if not self.enabled:
            return Verdict(command, False, "remote unlock is off ([mqtt] remote_unlock = false)")
        if not msg.secure:
            return Verdict(command, False, "remote unlock needs a TLS connection with a username")
        now = self._clock()
        while self._recent and now - self._recent[0] >= self.window_seconds:
            self._recent.popleft()
        if len(self._recent) >= self.max_unlocks:
            wait = self.window_seconds - (now - self._recent[0])
            return Verdict(command, False, f"rate limited: {self.max_unlocks} remote unlock(s) per "
                                           f"{self.window_seconds:g} s, next in {wait:.0f} s")
        self._recent.append(now)
        return self._run(command, self._unlock, "unlocked (pulse, then relock)")

    @staticmethod
    def _run(command: str, action: Callable[[], None], done: str) -> Verdict:
        try:
            action()
        except FacegateError as exc:  # audit or lock failure: the door stays as it was
            return Verdict(command, False, f"failed: {exc}")
        return Verdict(command, True, done)
