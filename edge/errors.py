"""Every facegate error and warning, in one tree.

One root (:class:`FacegateError`), one sub-root per area, and leaves that also
inherit the matching builtin, so callers may catch either the project type or
the stdlib kind (``except ValueError`` still works).
"""

from __future__ import annotations


class FacegateError(Exception):
    """Root of every error facegate raises on purpose."""


class BackendUnavailable(FacegateError, ImportError):
    """An optional dependency (dlib, picamera2, LiteRT, gpiozero, ...) is not installed; the message says how."""


# --- input images -----------------------------------------------------------
class ImageError(FacegateError):
    """An input image cannot be used."""


class ImageReadError(ImageError, OSError):
    """The file is missing, unreadable or not an image."""


class ImageTooLargeError(ImageError, ValueError):
    """The image exceeds the configured size limit (decompression-bomb guard)."""


# --- faces --------------------------------------------------------------------
class FaceError(FacegateError):
    """The image holds no usable face."""


class NoFaceError(FaceError, ValueError):
    """No face was found."""


class MultipleFacesError(FaceError, ValueError):
    """Several faces where exactly one is required (enrollment)."""


class FaceQualityError(FaceError, ValueError):
    """A face was found but is too small, blurred, dark or turned to use."""


# --- models -------------------------------------------------------------------
class ModelError(FacegateError):
    """A model or model bundle cannot be loaded or used."""


class BundleError(ModelError, ValueError):
    """A model bundle's manifest is missing, malformed or inconsistent."""


class ChecksumError(ModelError, ValueError):
    """A model file does not match the sha256 its manifest declares."""


class EmbeddingShapeError(ModelError, ValueError):
    """A model returned an embedding of an unexpected shape."""


class DetectorConfigError(ModelError, ValueError):
    """A detector setting is out of range."""


# --- gallery ------------------------------------------------------------------
class GalleryError(FacegateError):
    """The gallery database cannot be used."""


class GalleryInputError(GalleryError, ValueError):
    """A name, template vector or threshold the gallery refuses; nothing is written."""


class InvalidName(GalleryInputError):
    """A person's name is empty, too long, or holds control or invisible characters."""


class GalleryModelMismatch(GalleryError, ValueError):
    """Embeddings from different models must never be compared."""


class PersonNotFound(GalleryError, KeyError):
    """The named person is not enrolled."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "person not found"


class GallerySchemaError(GalleryError, RuntimeError):
    """The database file is of an unknown or newer schema."""


class GalleryKeyError(GalleryError, PermissionError):
    """The template key is missing, malformed, too readable, or not the gallery's key."""


class GalleryTampered(GalleryError, ValueError):
    """A stored template failed authentication: changed, moved to another row, or not encrypted."""


class LookalikeName(InvalidName):
    """A new name looks like an enrolled one (Cyrillic or fullwidth letters, case) or mixes scripts."""


class BackupError(GalleryError, ValueError):
    """A gallery backup file is malformed, of an unknown version, or the passphrase is wrong."""


class AuditError(FacegateError):
    """The audit log cannot be opened or written."""


class AuditSchemaError(AuditError, RuntimeError):
    """The audit table exists with other columns."""


# --- camera, lock, config -----------------------------------------------------
class CameraError(FacegateError):
    """A frame source failed to open or to deliver frames."""


class CameraUnavailable(CameraError, OSError):
    """The camera is missing or cannot be opened."""


class LockError(FacegateError):
    """The lock cannot be driven."""


class ConfigError(FacegateError, ValueError):
    """The configuration is malformed; the message names the key and value."""


# --- warnings -----------------------------------------------------------------
class FacegateWarning(Warning):
    """Root of facegate's warnings."""


class BackendFallback(FacegateWarning):
    """A preferred backend was unavailable and another one is used instead."""
