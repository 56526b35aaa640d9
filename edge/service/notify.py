"""systemd notifications (READY, WATCHDOG, STATUS, STOPPING) behind a tiny protocol."""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def notify(self, state: str) -> None: ...


class NullNotifier:
    def notify(self, state: str) -> None:
        pass


def systemd_notifier() -> Notifier:
    """sd_notify through ``sdnotify``; a no-op outside systemd or without the package."""
    try:
        import sdnotify
    except ImportError:
        log.debug("sdnotify not installed: no systemd notifications")
        return NullNotifier()
    return sdnotify.SystemdNotifier()
