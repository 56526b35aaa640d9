"""TIFF image file directories: the structure TIFF files and EXIF blocks share.

Only the integer tags a caller asks for are read, every offset is checked
against the buffer, and a value array is read with numpy (a strip table can
hold a million entries), so a hostile directory costs bounded time.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import ImageError, ImageReadError, ImageUnsupportedError

log = logging.getLogger(__name__)

#: Byte size of each TIFF field type that holds integers (BYTE, SHORT, LONG and signed kinds).
_INT_TYPES = {1: "u1", 3: "u2", 4: "u4", 6: "i1", 8: "i2", 9: "i4", 13: "u4"}
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
#: More entries than any real directory holds; beyond this the file is hostile or broken.
MAX_ENTRIES = 4096

ORIENTATION = 274


@dataclass(frozen=True)
class Ifd:
    """The integer values of the wanted tags, and where the next directory starts (0: none)."""

    values: dict[int, np.ndarray]
    next_offset: int
    #: (byte offset, size of one value) of each wanted tag's values; inline values sit in the entry.
    where: dict[int, tuple[int, int]]

    def first(self, tag: int, default: int | None = None) -> int | None:
        v = self.values.get(tag)
        return int(v[0]) if v is not None and v.size else default


def byte_order(data: bytes | memoryview) -> str:
    """``"<"`` or ``">"`` from a TIFF header; refuses BigTIFF and anything else."""
    head = bytes(data[:4])
    if head == b"II*\x00":
        return "<"
    if head == b"MM\x00*":
        return ">"
    if head in (b"II+\x00", b"MM\x00+"):
        raise ImageUnsupportedError("BigTIFF is not supported")
    raise ImageReadError("corrupt TIFF header")


def first_ifd_offset(data: bytes | memoryview, order: str) -> int:
    if len(data) < 8:
        raise ImageReadError("truncated TIFF header")
    return struct.unpack_from(order + "I", data, 4)[0]


def read_ifd(data: bytes | memoryview, offset: int, order: str, want: frozenset[int]) -> Ifd:
    """Read one directory at ``offset``; raises :class:`ImageReadError` if it leaves the buffer."""
    n = len(data)
    if offset < 8 or offset + 2 > n:
        raise ImageReadError("truncated TIFF: directory outside the file")
    count = struct.unpack_from(order + "H", data, offset)[0]
    if count == 0 or count > MAX_ENTRIES:
        raise ImageReadError(f"corrupt TIFF: directory of {count} entries")
    end = offset + 2 + 12 * count
    if end + 4 > n:
        raise ImageReadError("truncated TIFF: directory runs past the end")
    values: dict[int, np.ndarray] = {}
    where_of: dict[int, tuple[int, int]] = {}
    for k in range(count):
        pos = offset + 2 + 12 * k
        tag, typ, num = struct.unpack_from(order + "HHI", data, pos)
        if tag not in want or typ not in _INT_TYPES:
            continue
        size = _TYPE_SIZES[typ] * num
        where = pos + 8 if size <= 4 else struct.unpack_from(order + "I", data, pos + 8)[0]
        if where + size > n:
            raise ImageReadError(f"truncated TIFF: values of tag {tag} run past the end")
        dtype = np.dtype(_INT_TYPES[typ]).newbyteorder(order)
        values[tag] = np.frombuffer(data, dtype=dtype, count=num, offset=where).astype(np.int64)
        where_of[tag] = (where, _TYPE_SIZES[typ])
    next_offset = struct.unpack_from(order + "I", data, end)[0]
    return Ifd(values, next_offset, where_of)


def exif_orientation(block: bytes | memoryview) -> int:
    """The orientation tag (1..8) of an EXIF block; 1 when absent or unreadable.

    A broken EXIF block must not refuse an otherwise good photo: it is
    logged and the image is taken as stored.
    """
    if bytes(block[:6]) == b"Exif\x00\x00":
        block = block[6:]
    try:
        order = byte_order(block)
        ifd = read_ifd(block, first_ifd_offset(block, order), order, frozenset({ORIENTATION}))
    except (ImageError, struct.error, ValueError) as exc:
        log.debug("unreadable EXIF block ignored: %s", exc)
        return 1
    value = ifd.first(ORIENTATION, 1)
    return value if value is not None and 1 <= value <= 8 else 1
