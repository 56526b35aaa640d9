"""Signed gallery snapshots: an opaque (encrypted) gallery export, its model and version, an Ed25519 signature.

The message is JSON: ``{"header": {...}, "signature": b64, "blob": b64}``.
The header names the format, the model_id the templates were made with, a
version (publisher's milliseconds since the epoch unless given), the blob's
size and sha256, and the signing key's id; the signature covers a fixed
prefix and the canonical header, so it covers the blob through its hash.
The blob itself is never opened here: it is the encrypted gallery export,
and only the door's importer (which holds the gallery key) reads it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import BackendUnavailable, ConfigError, SnapshotRefused

__all__ = ["SNAPSHOT_FORMAT", "SnapshotHeader", "generate_keypair", "key_id", "load_private_key",
           "load_public_key", "open_snapshot", "seal_snapshot"]

SNAPSHOT_FORMAT = "facegate-gallery-snapshot/1"
_DOMAIN = SNAPSHOT_FORMAT.encode() + b"\n"
#: Refused before parsing: far above any household gallery, far below what hurts a Pi.
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class SnapshotHeader:
    format: str
    model_id: str
    version: int
    created: float
    size: int
    sha256: str
    key_id: str


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise BackendUnavailable("cryptography is not installed: pip install 'facegate[mqtt]'") from exc
    return ed25519, serialization, InvalidSignature


def _canonical(header: SnapshotHeader) -> bytes:
    return _DOMAIN + json.dumps(asdict(header), sort_keys=True, separators=(",", ":")).encode()


def key_id(public_key) -> str:
    """First 16 hex digits of the sha256 of the raw public key: which key signed."""
    _, serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def seal_snapshot(blob: bytes, *, model_id: str, private_key, version: int | None = None) -> bytes:
    """The retained message a publishing door sends."""
    if not model_id:
        raise ValueError("a snapshot needs the model_id its templates were made with")
    header = SnapshotHeader(
        format=SNAPSHOT_FORMAT, model_id=model_id,
        version=int(time.time() * 1000) if version is None else int(version),
        created=round(time.time(), 3), size=len(blob), sha256=hashlib.sha256(blob).hexdigest(),
        key_id=key_id(private_key.public_key()))
    signature = private_key.sign(_canonical(header))
    return json.dumps({"header": asdict(header), "signature": base64.b64encode(signature).decode(),
                       "blob": base64.b64encode(blob).decode()}, separators=(",", ":")).encode()


def open_snapshot(payload: bytes, *, public_key, model_id: str | None) -> tuple[SnapshotHeader, bytes]:
    """Check a snapshot message; the header and the blob, or :class:`SnapshotRefused` saying why.

    Order matters: nothing from the message is trusted before the signature
    over its header and the hash of its blob are checked.
    """
    _, _, InvalidSignature = _crypto()
    if len(payload) > MAX_SNAPSHOT_BYTES:
        raise SnapshotRefused(f"snapshot of {len(payload)} bytes refused (limit {MAX_SNAPSHOT_BYTES})")
    try:
        msg = json.loads(payload)
        fields = msg["header"]
        header = SnapshotHeader(**{k: fields[k] for k in SnapshotHeader.__dataclass_fields__})
        signature = base64.b64decode(msg["signature"], validate=True) if msg.get("signature") else b""
        blob = base64.b64decode(msg["blob"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SnapshotRefused(f"not a gallery snapshot ({type(exc).__name__}: {exc})") from None
    if header.format != SNAPSHOT_FORMAT:
        raise SnapshotRefused(f"unknown snapshot format {header.format!r}")
    if not signature:
        raise SnapshotRefused("unsigned snapshot refused")
    try:
        public_key.verify(signature, _canonical(header))
    except InvalidSignature:
        raise SnapshotRefused(f"bad signature (signed by key {header.key_id!r}, "
                              f"this door trusts {key_id(public_key)!r}, or the header was altered)") from None
    if len(blob) != header.size or hashlib.sha256(blob).hexdigest() != header.sha256:
        raise SnapshotRefused("the gallery data does not match its signed hash (tampered or truncated)")
    if model_id is not None and header.model_id != model_id:
        raise SnapshotRefused(f"snapshot made with model {header.model_id!r}, this door runs {model_id!r}")
    return header, blob


# --- keys -----------------------------------------------------------------------------------------
def generate_keypair(private_path: str | Path) -> Path:
    """Write a new Ed25519 private key (PEM, created 0600) and ``<private>.pub``; returns the public path."""
    ed25519, serialization, _ = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    private_path = Path(private_path)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{private_path} exists; not overwriting a signing key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path = private_path.with_name(private_path.name + ".pub")
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return public_path


def load_private_key(path: str | Path):
    ed25519, serialization, _ = _crypto()
    path = Path(path)
    try:
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path}: the signing key is readable by others; chmod 600 {path}")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the signing key: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: str | Path):
    ed25519, serialization, _ = _crypto()
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"mqtt.gallery_public_key: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"mqtt.gallery_public_key: {path} is not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"mqtt.gallery_public_key: {path} is not an Ed25519 key")
    return key
