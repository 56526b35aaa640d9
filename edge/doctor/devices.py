"""Who may open a device node, and which processes hold it open (read from /proc)."""

from __future__ import annotations

import glob
import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CAMERA_GLOBS", "GPIO_GLOB", "PROC", "Holder", "Identity", "access_problem", "device_holders", "devices"]

#: Device nodes a camera uses: V4L2 (OpenCV, and libcamera's ISP) and the media graph (libcamera).
CAMERA_GLOBS: tuple[str, ...] = ("/dev/video*", "/dev/media*")
GPIO_GLOB = "/dev/gpiochip*"
PROC = Path("/proc")


def devices(patterns: Iterable[str]) -> list[str]:
    return sorted(p for pattern in patterns for p in glob.glob(pattern))


@dataclass(frozen=True)
class Identity:
    """A user and its groups, as the kernel checks a device node's permissions."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def current(cls) -> Identity:
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return cls(name, uid, frozenset({os.getegid(), *os.getgroups()}))

    @classmethod
    def service(cls, user: str = "facegate", groups: Iterable[str] = ("video", "gpio")) -> Identity | None:
        """The unit's user with its ``SupplementaryGroups=`` (None when the user does not exist)."""
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            return None
        gids = {pw.pw_gid}
        for g in groups:
            try:
                gids.add(grp.getgrnam(g).gr_gid)
            except KeyError:
                pass
        return cls(user, pw.pw_uid, frozenset(gids))


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def access_problem(path: str, who: Identity | None = None) -> str | None:
    """Why ``who`` cannot open ``path`` read-write (None: it can).

    For the current process (``who=None``) the kernel answers (ACLs such as
    logind's seat access included); for another identity the owner/group/mode
    bits decide, as for the service user.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot stat {path}: {exc.strerror or exc}"
    desc = f"{path} is {_owner_name(st.st_uid)}:{_group_name(st.st_gid)} {stat.S_IMODE(st.st_mode):04o}"
    if who is None:
        return None if os.access(path, os.R_OK | os.W_OK) else desc
    if who.uid == 0:
        return None
    mode = st.st_mode
    if st.st_uid == who.uid:
        allowed = mode & 0o600 == 0o600
    elif st.st_gid in who.gids:
        allowed = mode & 0o060 == 0o060
    else:
        allowed = mode & 0o006 == 0o006
    return None if allowed else desc


def group_of(path: str) -> str:
    return _group_name(os.stat(path).st_gid)


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    device: str

    def __str__(self) -> str:
        return f"{self.command} (pid {self.pid}) holds {self.device}"


def device_holders(paths: Iterable[str], proc: Path | None = None) -> list[Holder]:
    """Processes with one of ``paths`` open, from ``/proc/PID/fd``.

    Without root only this user's processes can be seen; a camera held by the
    service then shows no holder (doctor says to run it with sudo).
    """
    proc = PROC if proc is None else proc
    targets = {os.path.realpath(p): p for p in paths}
    found: list[Holder] = []
    if not targets:
        return found
    try:
        entries = list(proc.iterdir())
    except OSError:
        return found
    me = os.getpid()
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        held = sorted(targets[t] for t in targets if t in links)
        if not held:
            continue
        try:
            command = (entry / "comm").read_text().strip() or "?"
        except OSError:
            command = "?"
        found.extend(Holder(int(entry.name), command, d) for d in held)
    return sorted(found, key=lambda h: (h.pid, h.device))
