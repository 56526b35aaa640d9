"""How much one input image may cost: the ``[images]`` table of the door's config."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import check_fields, setting

__all__ = ["DEFAULT_LIMITS", "ImageLimits"]


@dataclass(frozen=True)
class ImageLimits:
    """Caps checked from the file's size and header, before a byte is decoded.

    The defaults take any phone photo up to 40 MP. A decode peaks near 6
    bytes a pixel (measured: a 40 MP JPEG or PNG grows peak RSS by 235-250
    MB), which a 1 GB Pi survives; lower ``max_pixels`` on a 512 MB board.
    The upper bounds stop a config from switching the guard off.
    """

    max_pixels: int = setting(40_000_000, ge=1, le=250_000_000)
    max_file_bytes: int = setting(30_000_000, ge=1, le=500_000_000)

    def __post_init__(self) -> None:
        check_fields(self, "images")


DEFAULT_LIMITS = ImageLimits()
