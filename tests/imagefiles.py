"""Image files built byte by byte for the loader's tests: honest, lying, broken.

Headers are written here by hand (not with an encoder) so a test can make a
file claim any size it likes without ever holding that many pixels.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, *, depth: int = 8, colour: int = 2, idat: bytes | None = None,
        extra: bytes = b"", palette: bytes = b"") -> bytes:
    """A PNG whose IHDR says ``width`` x ``height``; ``idat`` defaults to a few zero bytes."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    plte = png_chunk(b"PLTE", palette) if palette else b""
    return (b"\x89PNG\r\n\x1a\n" + ihdr + extra + plte + png_chunk(b"IDAT", zlib.compress(b"\0" * 16) if idat is None
                                                                   else idat) + png_chunk(b"IEND", b""))


def palette_bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A real, valid 1-bit palette PNG of ``width`` x ``height`` zero pixels: about 109 KB for 30000^2."""
    co = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    data = b"".join(co.compress(row) for _ in range(height)) + co.flush()
    return png(width, height, depth=1, colour=3, idat=data, palette=b"\0\0\0\xff\xff\xff")


def jpeg_sof(width: int, height: int, components: int = 3, marker: int = 0xC0, precision: int = 8) -> bytes:
    """A JPEG that is all header: a frame header of any size, a scan, an end marker."""
    comps = b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
    sof = bytes([0xFF, marker]) + struct.pack(">HBHHB", 8 + 3 * components, precision, height, width, components) + comps
    sos = b"\xff\xda" + struct.pack(">HB", 6 + 2 * components, components) + b"".join(
        bytes([i + 1, 0]) for i in range(components)) + b"\x00\x3f\x00"
    return b"\xff\xd8" + sof + sos + b"\x00" * 32 + b"\xff\xd9"


def exif_block(orientation: int, big_endian: bool = False) -> bytes:
    """An EXIF block ("Exif\\0\\0" + TIFF) holding only the orientation tag."""
    o = ">" if big_endian else "<"
    tiff = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(o + "I", 8)
    tiff += struct.pack(o + "H", 1) + struct.pack(o + "HHI", 274, 3, 1) + struct.pack(o + "HH", orientation, 0)
    return b"Exif\x00\x00" + tiff + struct.pack(o + "I", 0)


def with_exif(jpeg: bytes, orientation: int, big_endian: bool = False) -> bytes:
    """``jpeg`` with an APP1 EXIF segment carrying ``orientation`` right after its SOI."""
    block = exif_block(orientation, big_endian)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block + jpeg[2:]


def encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok, ext
    return buf.tobytes()


def pnm(width: int, height: int, maxval: int = 255, kind: str = "P5", samples: bytes = b"") -> bytes:
    return f"{kind}\n{width} {height}\n{maxval}\n".encode() + samples


def bmp(width: int, height: int, bpp: int = 24, pixels: bytes = b"") -> bytes:
    header = struct.pack("<iiHHIIiiII", width, height, 1, bpp, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54) + struct.pack("<I", 40) + header + pixels


def tiff(width: int, height: int, samples: bytes = b"\0" * 16, photometric: int = 1, bits: int = 8,
         spp: int = 1, next_ifd: int = 0, orientation: int | None = None) -> bytes:
    """A little-endian, one-strip, uncompressed TIFF whose directory says ``width`` x ``height``."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, 1),
               (262, 3, 1, photometric), (273, 4, 1, 0), (277, 3, 1, spp), (278, 4, 1, height),
               (279, 4, 1, len(samples))]
    if orientation is not None:
        entries.append((274, 3, 1, orientation))
    entries.sort()
    ifd_size = 2 + 12 * len(entries) + 4
    data_at = 8 + ifd_size
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        value = data_at if tag == 273 else value
        out += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3
                                                      else struct.pack("<I", value))
    return out + struct.pack("<I", next_ifd) + samples


def webp_vp8x(width: int, height: int, flags: int = 0, body: bytes = b"") -> bytes:
    """A WebP with an extended header claiming a ``width`` x ``height`` canvas."""
    vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunks = b"VP8X" + struct.pack("<I", 10) + vp8x + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def webp_vp8l(width: int, height: int) -> bytes:
    """A lossless WebP whose bitstream header says ``width`` x ``height`` (no real pixels)."""
    bits = (width - 1) | (height - 1) << 14
    body = b"\x2f" + struct.pack("<I", bits) + b"\0" * 8
    chunk = b"VP8L" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def gif(width: int, height: int, frames: int = 1) -> bytes:
    """A GIF of ``frames`` frames each covering a ``width`` x ``height`` screen (tiny LZW data)."""
    out = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    for _ in range(frames):
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02" + b"\x02\x4c\x01" + b"\x00"
    return out + b"\x3b"
