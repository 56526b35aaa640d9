"""Where the template key comes from: a systemd credential or a private key file.

Looked up in this order:

1. ``$CREDENTIALS_DIRECTORY/facegate-gallery-key``: the unit's
   ``LoadCredential=facegate-gallery-key:/etc/facegate/gallery.key`` (or
   ``LoadCredentialEncrypted=`` with ``systemd-creds``). systemd reads the
   root-owned file and hands the service a private copy, so the service user
   cannot read the key file itself and the state directory (what gets backed
   up or copied) never holds the key.
2. the configured key file (``[storage] key_file``), else ``gallery.key`` next
   to the gallery file. When none exists it is created, 0600, at the first
   enrollment (or when a clear-text gallery is migrated), never earlier: an
   empty gallery needs no key.

A key file holds 32 random bytes as 64 hex digits (a raw 32-byte file is
accepted too). It is identified by ``key_id``, an HMAC of the key, which the
gallery records: a wrong key is then one clear error before anything is
read or written, instead of a failed decryption per row.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from ..errors import GalleryKeyError
from .files import PRIVATE, write_private

log = logging.getLogger(__name__)

__all__ = ["CREDENTIAL_NAME", "KEY_BYTES", "GalleryKey", "create_key", "default_key_path", "find_key",
           "key_id", "load_key", "credential_path"]

#: The credential name the unit passes with ``LoadCredential=``.
CREDENTIAL_NAME = "facegate-gallery-key"
KEY_BYTES = 32
_MAX_KEY_FILE = 4096


def key_id(key: bytes) -> str:
    """A public name for a key (16 hex digits): reveals nothing about it, tells keys apart."""
    return hmac.new(key, b"facegate gallery key id v1", sha256).hexdigest()[:16]


@dataclass(frozen=True)
class GalleryKey:
    """A template key and where it came from (the bytes never show in a repr)."""

    key: bytes = field(repr=False)
    origin: str

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise GalleryKeyError(f"{self.origin}: a key is {KEY_BYTES} bytes, got {len(self.key)}")

    @property
    def key_id(self) -> str:
        return key_id(self.key)

    @classmethod
    def ephemeral(cls) -> GalleryKey:
        """A random key that lives only in this process (``:memory:`` galleries)."""
        return cls(secrets.token_bytes(KEY_BYTES), "in-memory key")


def default_key_path(gallery: str | Path) -> Path:
    """``gallery.key`` beside ``gallery.db``."""
    return Path(gallery).with_suffix(".key")


def credential_path() -> Path | None:
    """The systemd credential's file, when the service was given one."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return None
    path = Path(folder) / CREDENTIAL_NAME
    return path if path.exists() else None


def load_key(path: str | Path, origin: str | None = None, *, check_mode: bool = True) -> GalleryKey:
    """Read one key file; every problem is a one-line :class:`GalleryKeyError`."""
    path = Path(path)
    origin = origin or f"key file {path}"
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise GalleryKeyError(f"{origin}: not a regular file")
        if check_mode and stat.S_IMODE(st.st_mode) & 0o027:
            raise GalleryKeyError(
                f"{origin}: mode {stat.S_IMODE(st.st_mode):#o} lets other users read or change the key; "
                f"run: chmod 600 {path}")
        if st.st_size > _MAX_KEY_FILE:
            raise GalleryKeyError(f"{origin}: {st.st_size} bytes is not a key file")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GalleryKeyError(f"{origin}: no such file") from None
    except OSError as exc:
        raise GalleryKeyError(f"{origin}: cannot read: {exc.strerror or exc}") from None
    if len(raw) == KEY_BYTES:
        return GalleryKey(raw, origin)
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise GalleryKeyError(f"{origin}: expected {2 * KEY_BYTES} hex digits ({KEY_BYTES} bytes)")
    return GalleryKey(key, origin)


def find_key(gallery: str | Path, key_file: str | Path | None = None) -> GalleryKey | None:
    """The key for ``gallery``: the systemd credential, else the key file; None if neither exists."""
    cred = credential_path()
    if cred is not None:
        # systemd made this copy private to the service; its mode is systemd's business.
        return load_key(cred, f"systemd credential {CREDENTIAL_NAME}", check_mode=False)
    path = Path(key_file) if key_file is not None else default_key_path(gallery)
    if not path.exists():
        return None
    return load_key(path)


def create_key(path: str | Path, mode: int = PRIVATE) -> GalleryKey:
    """A new random key written to ``path`` (exactly ``mode``); if another process
    created one there first, that key is returned instead."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GalleryKeyError(f"{path.parent}: cannot create directory: {exc.strerror or exc}") from None
    key = secrets.token_bytes(KEY_BYTES)
    if write_private(path, (key.hex() + "\n").encode("ascii"), mode):
        log.warning("created a new gallery key %s (id %s): back it up apart from the gallery, "
                    "templates cannot be read without it", path, key_id(key))
        return GalleryKey(key, f"key file {path}")
    return load_key(path)
