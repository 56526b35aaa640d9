"""Files that hold personal data or secrets: created 0600 (or 0640), whatever the umask.

The gallery, its audit events, the template key, backups and saved face
crops must never be readable by other local users. ``open(path, "w")`` and
SQLite both create files with 0666/0644 minus the umask, so a permissive
umask (000 in a careless shell or container) leaves them world-readable. Here
every such file is created with ``O_EXCL`` and then ``fchmod``-ed to the exact
mode (``fchmod`` ignores the umask), and an existing file that is more open
than allowed is tightened. SQLite gives its ``-wal`` and ``-shm`` files the
main file's mode, so creating the main file right is enough for them.

``0640`` lets one group read (the unit's ``Group=``, e.g. for an admin tool);
nothing here is ever writable by the group or readable by others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from ..errors import GalleryError

log = logging.getLogger(__name__)

__all__ = ["PRIVATE", "GROUP_READABLE", "file_mode", "ensure_private_file", "tighten", "write_private"]

PRIVATE = 0o600
GROUP_READABLE = 0o640
_ALLOWED = (PRIVATE, GROUP_READABLE)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def file_mode(group_readable: bool = False) -> int:
    """The mode for private files: 0640 when a group may read them, else 0600."""
    return GROUP_READABLE if group_readable else PRIVATE


def _check_mode(mode: int) -> int:
    if mode not in _ALLOWED:
        raise ValueError(f"file mode must be 0o600 or 0o640, got {mode:#o}")
    return mode


def tighten(path: str | Path, mode: int = PRIVATE) -> None:
    """Remove permission bits beyond ``mode`` from an existing file (never adds any)."""
    mode = _check_mode(mode)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    current = stat.S_IMODE(st.st_mode)
    if current & ~mode:
        try:
            os.chmod(path, current & mode)
        except OSError as exc:
            raise GalleryError(f"{path}: mode {current:#o} is too open and cannot be changed: "
                               f"{exc.strerror or exc}") from None
        log.warning("%s: mode was %#o, tightened to %#o", path, current, current & mode)


def ensure_private_file(path: str | Path, mode: int = PRIVATE) -> bool:
    """Create ``path`` empty with exactly ``mode`` if it does not exist (True), else
    tighten it (False). Symbolic links are not followed for a new file."""
    mode = _check_mode(mode)
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
    except FileExistsError:
        tighten(path, mode)
        return False
    except OSError as exc:
        raise GalleryError(f"{path}: cannot create: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return True


def write_private(path: str | Path, data: bytes, mode: int = PRIVATE, *, replace: bool = False,
                  strict: bool = True) -> bool:
    """Write ``data`` to ``path`` atomically with exactly ``mode``.

    The bytes go to a temporary file (fsync'ed) first, so a crash never
    leaves half a key or half a backup. ``strict=False`` accepts a file system
    that cannot set modes (a FAT-formatted USB stick, for an encrypted backup)
    with a warning. With ``replace=False`` an existing
    ``path`` is kept and False returned (the temporary is linked in with
    ``os.link``, which fails if the name exists: two processes creating a key
    at once both end up with the same, first, key).
    """
    mode = _check_mode(mode)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
    except OSError as exc:
        raise GalleryError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        try:
            try:
                os.fchmod(fd, mode)
            except OSError as exc:
                if strict:
                    raise
                log.warning("%s: cannot set mode %#o on this file system (%s)", path, mode, exc.strerror or exc)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
            created = True
        else:
            try:
                os.link(tmp, path)
                created = True
            except FileExistsError:
                created = False
    except OSError as exc:
        raise GalleryError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    if created:
        with contextlib.suppress(OSError):
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    return created
