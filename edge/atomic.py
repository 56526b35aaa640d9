"""Atomic file writes: a reader sees the old file or the whole new one, never half.

The door's bundle manifests, the evaluation and training caches and the
training checkpoints are rewritten in place; a crash or a power cut in the
middle of a write must leave the previous file, not a truncated one. So the
new content goes to a temporary file in the target's own folder (same file
system, so :func:`os.replace` is atomic), is fsync'ed, and only then replaces
the target. Standard library only: numpy and torch callers pass a callback
that writes to the open binary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable, Iterator

__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json"]


def _create_temp(path: Path) -> Path:
    """A new, empty ``.<name>.<random>.tmp`` next to ``path``; created 0o666 so the umask
    applies exactly as for a plain ``open(path, "w")`` (``mkstemp`` would force 0o600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync(path: Path, directory: bool = False) -> None:
    """Push ``path``'s data to the disk; for a folder (the rename itself) best effort only,
    since some platforms (Windows) cannot open a directory."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to fill (for writers that want a file name, such as a
    numpy memory map); on a clean exit it is fsync'ed and replaces ``path``, on an
    exception it is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = _create_temp(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync(path.parent, directory=True)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Replace ``path`` with what ``write`` writes to the open binary file it is given
    (``lambda f: np.save(f, a)``, ``lambda f: torch.save(obj, f)``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    atomic_write(path, lambda f: f.write(text.encode(encoding)))


def atomic_write_json(path: str | Path, obj: Any, **json_kwargs: Any) -> None:
    """``json.dumps(obj, **json_kwargs)`` plus a final newline."""
    atomic_write_text(path, json.dumps(obj, **json_kwargs) + "\n")
