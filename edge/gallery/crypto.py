"""Templates sealed with AES-256-GCM, each bound to its row.

A face template is biometric data: with a copied clear-text gallery, photos
can be chosen offline that match an enrolled person. So every vector is
encrypted with a key that is not stored in the gallery (:mod:`.keys`). The
associated data binds the ciphertext to its row: template id, person id,
person name, model id and dimension. Moving a template to another person,
another row or another model makes decryption fail instead of letting
someone's face open the door under another name.

Stored blob: one version byte, a 12-byte random nonce, ciphertext and tag.
The AES key is derived from the gallery key with HKDF, so the same secret
could later key other things without reuse.
"""

from __future__ import annotations

import json
import secrets

import numpy as np

from ..errors import BackendUnavailable, GalleryTampered
from .keys import GalleryKey

__all__ = ["TemplateCipher", "decision_aad", "require_cryptography", "template_aad"]


def require_cryptography():
    """The ``cryptography`` package, or BackendUnavailable saying how to install it."""
    try:
        import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable("encrypted templates need the cryptography package: "
                                 "pip install 'facegate[edge]' (or pip install cryptography)") from exc
    import cryptography

    return cryptography

_VERSION = 1
_NONCE = 12
_TAG = 16


def template_aad(template_id: int, person_id: int, name: str, model_id: str, dim: int) -> bytes:
    """What a template's ciphertext is bound to (an unambiguous JSON list)."""
    return json.dumps(["facegate/template", _VERSION, int(template_id), int(person_id), name, model_id, int(dim)],
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decision_aad(event_id: int, model_id: str, dim: int) -> bytes:
    """What an audited decision's embedding is bound to: its event (held, then kept when marked wrong)."""
    return json.dumps(["facegate/decision", _VERSION, int(event_id), model_id, int(dim)],
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class TemplateCipher:
    """Seal and open template vectors with one gallery key."""

    def __init__(self, key: GalleryKey) -> None:
        require_cryptography()
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        self.key_id = key.key_id
        aes_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"facegate gallery templates v1").derive(key.key)
        self._aead = AESGCM(aes_key)

    def seal(self, vector: np.ndarray, aad: bytes) -> bytes:
        plain = np.ascontiguousarray(vector, dtype="<f4").tobytes()
        nonce = secrets.token_bytes(_NONCE)
        return bytes([_VERSION]) + nonce + self._aead.encrypt(nonce, plain, aad)

    def open(self, blob: bytes, aad: bytes, dim: int, where: str) -> np.ndarray:
        """The vector sealed in ``blob``; :class:`GalleryTampered` if it is not exactly what was sealed there."""
        from cryptography.exceptions import InvalidTag

        if not isinstance(blob, bytes) or len(blob) != 1 + _NONCE + 4 * dim + _TAG or blob[0] != _VERSION:
            raise GalleryTampered(f"{where}: stored template has the wrong size or format")
        try:
            plain = self._aead.decrypt(blob[1:1 + _NONCE], blob[1 + _NONCE:], aad)
        except InvalidTag:
            raise GalleryTampered(
                f"{where}: template failed authentication (changed, or moved to another person or row)") from None
        return np.frombuffer(plain, dtype="<f4")
