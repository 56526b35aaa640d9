"""Is the system clock synchronised? From ``timedatectl show``, else the kernel's ``adjtimex``.

The door's audit log stamps every decision with the wall clock, and MQTT over
TLS checks certificate dates with it; a Pi has no battery clock (the Pi 5 has
one only with a battery fitted), so after a boot without network its clock
is wherever fake-hwclock left it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["ClockState", "adjtimex_state", "clock_state", "timedatectl_state"]

TIME_ERROR = 5  # adjtimex's return value when the clock is not synchronised
STA_UNSYNC = 0x0040


@dataclass(frozen=True)
class ClockState:
    #: True / False, or None when it cannot be told.
    synchronised: bool | None
    source: str
    #: timedatectl only: whether an NTP client (systemd-timesyncd, chrony) is turned on.
    ntp_enabled: bool | None = None


def timedatectl_state() -> ClockState | None:
    """``timedatectl show``'s NTPSynchronized / NTP (None without systemd or its bus)."""
    exe = shutil.which("timedatectl")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "show"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    props = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    if "NTPSynchronized" not in props:
        return None
    ntp = props.get("NTP")
    return ClockState(props["NTPSynchronized"] == "yes", "timedatectl", None if ntp is None else ntp == "yes")


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """glibc's ``struct timex`` (read-only use: modes = 0)."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int), ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


def adjtimex_state() -> ClockState | None:
    """The kernel's own flag (what timedatectl reads too); None where there is no adjtimex."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fn = libc.adjtimex
    except (OSError, AttributeError):
        return None
    tx = _Timex()  # modes = 0: only read
    state = fn(ctypes.byref(tx))
    if state < 0:
        return None
    return ClockState(state != TIME_ERROR and not tx.status & STA_UNSYNC, "adjtimex")


def clock_state() -> ClockState:
    return timedatectl_state() or adjtimex_state() or ClockState(None, "none")
