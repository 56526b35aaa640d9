"""Reading images safely: clear errors, a size guard, one pixel format out.

Everything downstream works on BGR uint8 (H, W, 3) arrays, OpenCV's native
order; grey and 4-channel inputs are converted here once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageReadError, ImageTooLargeError

log = logging.getLogger(__name__)

#: Refuse files above this many bytes and images above this many pixels.
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000


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


def check_pixels(height: int, width: int, what: str = "image") -> None:
    if height * width > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {height * width / 1e6:.0f} MP; the limit is {MAX_PIXELS / 1e6:.0f} MP"
        )


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into BGR uint8, or raise a one-line :class:`ImageError`."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file") from None
    except OSError as exc:
        raise ImageReadError(f"{p}: {exc.strerror or exc}") from None
    if not p.is_file():
        raise ImageReadError(f"{p}: not a file")
    if size > MAX_FILE_BYTES:
        raise ImageTooLargeError(f"{p}: {size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{p}: {exc.strerror or exc}") from None
    return decode_image(data, name=str(p))


def decode_image(data: bytes | np.ndarray, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, PGM, ...) into BGR uint8."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if buf.size == 0:
        raise ImageReadError(f"{name}: empty file")
    # Read the header first so a decompression bomb is refused before decoding.
    header = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8) if buf.size > 1_000_000 else None
    if header is not None:
        check_pixels(header.shape[0] * 8, header.shape[1] * 8, name)
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{name}: not a readable image")
    check_pixels(image.shape[0], image.shape[1], name)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    return to_bgr(image)
