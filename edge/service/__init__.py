"""The door service: the daemon loop (:mod:`.daemon`), its stall guard and systemd notifier."""

from .daemon import DaemonStats, DoorDaemon, run_daemon
from .guard import StallGuard
from .notify import Notifier, NullNotifier, systemd_notifier

__all__ = ["DaemonStats", "DoorDaemon", "Notifier", "NullNotifier", "StallGuard", "run_daemon", "systemd_notifier"]
