"""Encrypted, versioned gallery backups (``facegate gallery export`` / ``import``).

Why a passphrase and not the gallery key: a backup is for the day the SD
card dies, and the key file (or the systemd credential) usually dies with
it. A backup sealed with that key would need a second backup of the key,
kept just as safe; a passphrase is something the admin can keep on paper.
The price is that a weak passphrase can be guessed offline, so the key is
derived with scrypt (2^15 x 8: 32 MiB and a noticeable fraction of a second
per guess on a Pi) and passphrases shorter than 12 characters are refused.
Importing re-seals every template with the target gallery's own key.

File layout (all integers big-endian)::

    b"FACEGATE-BACKUP\\n"            16-byte magic
    u32 header length, header      JSON: format version, KDF and its
                                   parameters and salt, cipher, nonce,
                                   model ids, counts, creation time
    ciphertext                     AES-256-GCM of the JSON payload (people,
                                   templates as base64 float32); the magic
                                   and header are its associated data, so
                                   they cannot be altered either

A newer version is refused with a message saying so; the model id is
checked on import against the gallery (and the door's model when known).
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackupError
from .crypto import require_cryptography
from .files import PRIVATE, write_private
from .records import PersonRecord, TemplateRecord

__all__ = ["FORMAT_VERSION", "MIN_PASSPHRASE", "read_backup", "write_backup", "backup_header"]

MAGIC = b"FACEGATE-BACKUP\n"
FORMAT_VERSION = 1
MIN_PASSPHRASE = 12
MAX_BACKUP_BYTES = 256 << 20
_MAX_HEADER = 64 << 10
#: scrypt cost: n=2^15, r=8 (32 MiB), p=1. Kept in the header, so raising it later needs no new version.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
_SCRYPT_MAX_N = 1 << 20
_SCRYPT_MAX_MEMORY = 256 << 20  # a crafted header must not exhaust a Pi's memory


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (ValueError, TypeError):
        raise BackupError(f"backup: {what} is not base64") from None


def _aesgcm(key: bytes):
    require_cryptography()
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    require_cryptography()
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def check_passphrase(passphrase: str) -> str:
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE:
        raise BackupError(f"the backup passphrase must be at least {MIN_PASSPHRASE} characters")
    return passphrase


def write_backup(path: str | Path, people: list[PersonRecord], passphrase: str, *, overwrite: bool = False) -> dict:
    """Seal ``people`` into a new backup file (0600); returns its header."""
    check_passphrase(passphrase)
    path = Path(path)
    if path.exists() and not overwrite:
        raise BackupError(f"{path}: already exists; choose another name")
    payload = {"people": [
        {"name": p.name, "created_at": p.created_at, "note": p.note,
         "templates": [{"model_id": t.model_id, "dim": int(t.vector.shape[0]), "quality": t.quality,
                        "source": t.source, "created_at": t.created_at,
                        "vector": _b64(np.ascontiguousarray(t.vector, dtype="<f4").tobytes())}
                       for t in p.templates]}
        for p in people]}
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = {
        "format": "facegate-gallery-backup", "version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "cipher": "AES-256-GCM", "nonce": _b64(nonce),
        "model_ids": sorted({t.model_id for p in people for t in p.templates}),
        "people": len(people), "templates": sum(len(p.templates) for p in people),
    }
    head = json.dumps(header, sort_keys=True).encode("utf-8")
    prefix = MAGIC + struct.pack(">I", len(head)) + head
    key = _derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    body = _aesgcm(key).encrypt(nonce, json.dumps(payload, separators=(",", ":")).encode("utf-8"), prefix)
    # strict=False: a backup often goes to a FAT USB stick, which has no modes; its content is sealed anyway
    write_private(path, prefix + body, PRIVATE, replace=True, strict=False)
    return header


def _split(path: Path) -> tuple[bytes, dict, bytes]:
    try:
        size = path.stat().st_size
        if size > MAX_BACKUP_BYTES:
            raise BackupError(f"{path}: {size} bytes is larger than any backup this facegate writes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except OSError as exc:
        raise BackupError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise BackupError(f"{path}: not a facegate gallery backup")
    (n,) = struct.unpack(">I", data[len(MAGIC):len(MAGIC) + 4])
    if n > _MAX_HEADER or len(MAGIC) + 4 + n > len(data):
        raise BackupError(f"{path}: damaged backup (header length {n})")
    end = len(MAGIC) + 4 + n
    try:
        header = json.loads(data[len(MAGIC) + 4:end])
        if not isinstance(header, dict):
            raise ValueError
    except ValueError:
        raise BackupError(f"{path}: damaged backup header") from None
    version = header.get("version")
    if header.get("format") != "facegate-gallery-backup" or not isinstance(version, int):
        raise BackupError(f"{path}: not a facegate gallery backup")
    if version > FORMAT_VERSION:
        raise BackupError(f"{path}: backup format v{version} is newer than this facegate reads "
                          f"(v{FORMAT_VERSION}); upgrade facegate")
    return data[:end], header, data[end:]


def backup_header(path: str | Path) -> dict:
    """The clear-text (but authenticated) header: version, model ids, counts."""
    return _split(Path(path))[1]


def read_backup(path: str | Path, passphrase: str) -> tuple[dict, list[PersonRecord]]:
    """The header and the people of a backup; a wrong passphrase or any change is one BackupError."""
    path = Path(path)
    prefix, header, body = _split(path)
    kdf = header.get("kdf") or {}
    try:
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if kdf.get("name") != "scrypt" or header.get("cipher") != "AES-256-GCM":
            raise ValueError
        if not (2 <= n <= _SCRYPT_MAX_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
                and 128 * n * r <= _SCRYPT_MAX_MEMORY):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise BackupError(f"{path}: unsupported key derivation or cipher in the header") from None
    key = _derive(passphrase, _unb64(kdf.get("salt"), "salt"), n, r, p)
    from cryptography.exceptions import InvalidTag

    try:
        plain = _aesgcm(key).decrypt(_unb64(header.get("nonce"), "nonce"), body, prefix)
    except (InvalidTag, ValueError):
        raise BackupError(f"{path}: wrong passphrase, or the backup was changed") from None
    try:
        people = [_person(d) for d in json.loads(plain)["people"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupError(f"{path}: damaged backup contents ({exc})") from None
    found = sorted({t.model_id for q in people for t in q.templates})
    if found != header.get("model_ids"):
        raise BackupError(f"{path}: header names models {header.get('model_ids')} but it holds {found}")
    return header, people


def _time(value: Any) -> str | None:
    if value is None:
        return None
    datetime.fromisoformat(str(value))  # ValueError if not a timestamp
    return str(value)


def _person(d: dict) -> PersonRecord:
    templates = []
    for t in d["templates"]:
        vec = np.frombuffer(_unb64(t["vector"], "template"), dtype="<f4")
        if vec.shape[0] != int(t["dim"]):
            raise ValueError(f"template of {d['name']!r} has {vec.shape[0]} values, dim says {t['dim']}")
        q = t.get("quality")
        templates.append(TemplateRecord(vec.astype(np.float32), str(t["model_id"]),
                                        None if q is None else float(q),
                                        None if t.get("source") is None else str(t["source"]),
                                        _time(t.get("created_at"))))
    note = d.get("note")
    return PersonRecord(str(d["name"]), _time(d.get("created_at")), None if note is None else str(note),
                        tuple(templates))
