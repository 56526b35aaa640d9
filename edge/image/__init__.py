"""Input images: header checks before decoding, caps, one pixel format out.

:func:`load_image` is the one door through which an image file enters
facegate (enroll, verify, identify, embed, replay); see docs/security-input.md.
"""

from __future__ import annotations

from .headers import FORMATS, ImageHeader, read_header
from .limits import DEFAULT_LIMITS, ImageLimits
from .load import check_header, check_name, decode_image, load_image, orient, read_file, shown, to_bgr

__all__ = [
    "DEFAULT_LIMITS",
    "FORMATS",
    "ImageHeader",
    "ImageLimits",
    "check_header",
    "check_name",
    "decode_image",
    "load_image",
    "orient",
    "read_file",
    "read_header",
    "shown",
    "to_bgr",
]
