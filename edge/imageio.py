"""Reading images safely: kept as the import path the rest of facegate uses.

The work is done in :mod:`facegate.edge.image` (headers read and capped
before decoding, special files refused, EXIF orientation applied); this
module re-exports its entry points.
"""

from __future__ import annotations

from .image import DEFAULT_LIMITS, ImageLimits, decode_image, load_image, read_header, to_bgr

__all__ = ["DEFAULT_LIMITS", "ImageLimits", "decode_image", "load_image", "read_header", "to_bgr"]
