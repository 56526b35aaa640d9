"""The one way an image file enters facegate: checked, capped, decoded, upright.

Order matters, for a door on a 1 GB Pi:

1. the name: control and bidi-override characters are refused, and every
   message shows names escaped, so an error stays one honest line;
2. the file: ``lstat`` first, so a symbolic link, directory, FIFO, socket or
   device is refused without being opened (opening ``/dev/watchdog`` arms
   it); then ``open(O_NOFOLLOW)`` and a check that the same regular file was
   opened; at most ``max_file_bytes`` are ever read;
3. the header (:mod:`.headers`): size, depth, colour, frames; the pixel cap
   and the kinds the door refuses are checked here, before decoding, so a
   100 KB PNG claiming 30000 x 30000 pixels costs kilobytes, not gigabytes;
4. the decode: OpenCV to BGR uint8 (binary PNM by numpy, to scale its
   ``maxval`` exactly), then a check that the decoder saw the size the header
   declared, then the EXIF orientation applied.

16-bit images are converted, not refused: OpenCV keeps the high byte of each
sample (libpng's and libtiff's strip; within one level of exact rounding),
binary PNM is scaled by its maxval with rounding. CMYK/YCCK, animated images
(GIF, APNG, WebP) and multi-page TIFF are refused: which frame or which ink
conversion is meant cannot be guessed, and a door should not guess.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import unicodedata
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError, ImageReadError, ImageTooLargeError, ImageUnsupportedError
from ..settings import printable
from .headers import ImageHeader, read_header, too_large
from .limits import DEFAULT_LIMITS, ImageLimits

__all__ = ["check_header", "check_name", "decode_image", "load_image", "orient", "read_file", "shown", "to_bgr"]

log = logging.getLogger(__name__)

#: Bidirectional embedding, override and isolate controls: they make a name display as another.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_JPEG_CODINGS = ("baseline", "extended", "progressive")
_FORMAT_NAMES = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "pnm": "PNM", "tiff": "TIFF",
                 "webp": "WebP"}
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


# --- names ----------------------------------------------------------------------
def shown(name: str) -> str:
    """``name`` safe to print on one line: every non-printable character escaped (``\\n``, ``\\u202e``, ...)."""
    return printable(name)


def check_name(path: str) -> None:
    """Refuse a path holding control characters (newlines, escapes, NUL) or bidi overrides."""
    bad = next((ch for ch in path if unicodedata.category(ch) == "Cc" or ch in BIDI_CONTROLS), None)
    if bad is not None:
        raise ImageReadError(f"{shown(path)}: the file name holds the control character U+{ord(bad):04X}; "
                             "rename the file")


# --- files ----------------------------------------------------------------------
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def read_file(path: str | os.PathLike, limits: ImageLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes of a regular file, at most ``limits.max_file_bytes`` of them; one-line errors."""
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    check_name(p)
    label = shown(p)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        raise ImageReadError(f"{label}: no such file") from None
    except OSError as exc:
        raise ImageReadError(f"{label}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = f" to {shown(os.readlink(p))}"
        except OSError:
            target = ""
        raise ImageReadError(f"{label}: is a symbolic link{target}; give the file itself")
    if not stat.S_ISREG(st.st_mode):
        kind = next((word for test, word in _KINDS if test(st.st_mode)), "not a regular file")
        raise ImageReadError(f"{label}: is {kind}, not an image file")
    _check_size(st.st_size, limits, label)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageReadError(f"{label}: is a symbolic link; give the file itself") from None
        raise ImageReadError(f"{label}: {exc.strerror or exc}") from None
    try:
        st2 = os.fstat(fd)
        if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(st2.st_mode):
            raise ImageReadError(f"{label}: the file changed while it was opened")
        chunks, total = [], 0
        while True:  # the file may grow after stat: never read past the cap
            want = min(limits.max_file_bytes + 1 - total, max(st.st_size + 1 - total, 1 << 16))
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limits.max_file_bytes:
                _check_size(total, limits, label)
    except OSError as exc:
        raise ImageReadError(f"{label}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if not data:
        raise ImageReadError(f"{label}: empty file")
    return data


def _check_size(size: int, limits: ImageLimits, label: str) -> None:
    if size > limits.max_file_bytes:
        raise ImageTooLargeError(f"{label}: the file has {size / 1e6:.1f} MB; the limit is "
                                 f"{limits.max_file_bytes / 1e6:.1f} MB ([images] max_file_bytes)")


# --- what the door accepts ------------------------------------------------------------
def check_header(header: ImageHeader, limits: ImageLimits = DEFAULT_LIMITS) -> None:
    """Refuse, from the header alone, an image too large or of a kind the door does not read."""
    fmt = _FORMAT_NAMES[header.format]
    if header.pixels > limits.max_pixels:
        raise too_large(fmt, header.width, header.height, limits.max_pixels)
    if header.frames > 1:
        what = "a multi-page TIFF" if header.format == "tiff" else f"an animated {fmt}"
        raise ImageUnsupportedError(f"{what}; save the one frame to use as JPEG or PNG")
    if header.colour in ("cmyk", "ycck"):
        raise ImageUnsupportedError(f"a CMYK {fmt} (print colours); save it as an RGB (sRGB) JPEG or PNG")
    if header.colour not in ("grey", "rgb", "palette"):
        raise ImageUnsupportedError(f"a {fmt} in {header.colour} colour; save it as an RGB JPEG or PNG")
    if header.bits > 16 or (header.format == "jpeg" and header.bits != 8):
        raise ImageUnsupportedError(f"a {fmt} with {header.bits}-bit samples; save it with 8 bits")
    if header.format == "jpeg" and header.variant not in _JPEG_CODINGS:
        raise ImageUnsupportedError(f"a {header.variant} JPEG; save it as an ordinary (baseline) JPEG")
    if header.format == "bmp" and header.variant in ("jpeg", "png"):
        raise ImageUnsupportedError(f"a BMP wrapping {header.variant.upper()} data; use the {header.variant.upper()} itself")


# --- decoding -------------------------------------------------------------------------
def decode_image(data: bytes | bytearray | memoryview | np.ndarray, name: str = "image",
                 limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Encoded bytes -> upright BGR uint8 (H, W, 3), or a one-line :class:`ImageError` naming ``name``."""
    label = shown(name)
    buf = data if isinstance(data, bytes) else bytes(data)
    if len(buf) > limits.max_file_bytes:
        _check_size(len(buf), limits, label)
    try:
        header = read_header(buf, limits.max_pixels)
        check_header(header, limits)
        image = _decode(buf, header)
    except ImageError as exc:
        raise type(exc)(f"{label}: {exc}") from None
    return orient(image, header.orientation)


def _decode(buf: bytes, header: ImageHeader) -> np.ndarray:
    try:
        if header.format == "pnm" and header.variant in ("P4", "P5", "P6"):
            image = _decode_binary_pnm(buf, header)
        else:
            if header.upright_patch is not None:  # the decoder must see the image as stored
                at, value = header.upright_patch
                buf = buf[:at] + value + buf[at + len(value):]
            image = cv2.imdecode(np.frombuffer(buf, np.uint8), _DECODE_FLAGS)
    except cv2.error as exc:
        log.debug("decoder error: %s", exc)
        raise ImageReadError(f"corrupt {_FORMAT_NAMES[header.format]}: {_cv_reason(exc)}") from None
    except MemoryError:
        raise ImageTooLargeError("not enough memory to decode it") from None
    if image is None:
        raise ImageReadError(f"{_FORMAT_NAMES[header.format]} data the decoder could not read "
                             "(damaged, or a variant this OpenCV build lacks)")
    if image.shape[:2] != (header.height, header.width):
        raise ImageReadError(f"corrupt {_FORMAT_NAMES[header.format]}: decoded as {image.shape[1]}x{image.shape[0]} "
                             f"but its header says {header.width}x{header.height}")
    return to_bgr(image)


def _cv_reason(exc: cv2.error) -> str:
    """The reason in an OpenCV error, without source paths or function names."""
    for line in str(exc).splitlines():
        if "error:" in line:
            reason = line.split("error:", 1)[1].split(" in function")[0].strip()
            return shown(reason)[:200] or "the decoder refused it"
    return "the decoder refused it"


def _decode_binary_pnm(buf: bytes, header: ImageHeader) -> np.ndarray:
    """P4/P5/P6 by numpy: OpenCV leaves binary samples unscaled when maxval is not 255."""
    h, w, off = header.height, header.width, header.data_offset
    if header.variant == "P4":  # 1 = black, rows padded to whole bytes
        rows = np.frombuffer(buf, np.uint8, count=(w + 7) // 8 * h, offset=off).reshape(h, -1)
        return (1 - np.unpackbits(rows, axis=1)[:, :w]) * np.uint8(255)
    channels = 3 if header.variant == "P6" else 1
    dtype = np.dtype(">u2") if header.maxval > 255 else np.uint8
    raw = np.frombuffer(buf, dtype, count=w * h * channels, offset=off).reshape(h, w, channels)
    m = header.maxval
    if m == 255:
        return raw[..., ::-1] if channels == 3 else raw[..., 0]
    out = np.empty((h, w, channels), np.uint8)
    step = max(1, (1 << 20) // (w * channels))  # rows per block: a few MB of scratch at most
    for r in range(0, h, step):
        block = np.minimum(raw[r:r + step].astype(np.uint32), m)
        out[r:r + step] = (block * 255 + m // 2) // m
    return out[..., ::-1] if channels == 3 else out[..., 0]  # PPM is RGB


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored image upright as its EXIF orientation (1..8) says."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def load_image(path: str | os.PathLike, limits: ImageLimits | None = None) -> np.ndarray:
    """Read an image file into upright BGR uint8, or raise a one-line :class:`ImageError` naming it."""
    limits = limits or DEFAULT_LIMITS
    return decode_image(read_file(path, limits), str(Path(path)) if not isinstance(path, bytes) else os.fsdecode(path),
                        limits)


# --- arrays -----------------------------------------------------------------------------
def to_bgr(image: np.ndarray) -> np.ndarray:
    """Return a contiguous BGR uint8 (H, W, 3) view of grey, BGR or BGRA input."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise ImageReadError("not an image array")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.max(initial=0) <= 1.0:
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise ImageReadError(f"unsupported image shape {image.shape}")
