"""What an image file says about itself, read from its header before any decoding.

One small reader per accepted format (JPEG, PNG, GIF, BMP, PBM/PGM/PPM,
TIFF, WebP) returns an :class:`ImageHeader`: size, sample depth, colour
kind, frame count and EXIF orientation. The readers only describe; what the
door accepts is decided in one place (:func:`facegate.edge.image.load.check_header`).

Each reader also walks the file's structure far enough to see that it is
whole (PNG chunks with their CRCs up to IEND, JPEG segments up to the scan
and its end marker, GIF blocks up to the trailer, the byte count a BMP, PNM,
TIFF or WebP header promises), so a truncated file is refused here rather
than decoded into a half-grey image. Walks are bounded in steps, so a file
made of millions of tiny chunks costs milliseconds, not seconds.

Every malformed input ends in :class:`ImageReadError` (broken) or
:class:`ImageUnsupportedError` (a format the door does not read); never in
another exception.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from ..errors import ImageError, ImageReadError, ImageTooLargeError, ImageUnsupportedError
from .ifd import byte_order, exif_orientation, first_ifd_offset, read_ifd

__all__ = ["FORMATS", "ImageHeader", "read_header", "too_large"]

#: What the door reads, for messages.
FORMATS = "JPEG, PNG, WebP, BMP, TIFF, PGM/PPM/PBM, GIF"
#: Structural steps (chunks, segments, blocks) a reader takes before calling the file hostile.
MAX_STEPS = 200_000


@dataclass(frozen=True)
class ImageHeader:
    """An image as its header describes it."""

    format: str  # "jpeg", "png", "gif", "bmp", "pnm", "tiff", "webp"
    width: int
    height: int
    #: Bits per sample (8 for ordinary photos; 1 for bilevel, 16 for deep images).
    bits: int = 8
    #: "grey", "rgb", "palette", "cmyk", "ycck", "lab", or another word the door refuses.
    colour: str = "rgb"
    frames: int = 1
    #: EXIF orientation, 1..8 (1: stored upright).
    orientation: int = 1
    #: Format-specific coding, e.g. "progressive" or "lossless" JPEG, "P6" for PNM, "rle" BMP.
    variant: str = ""
    #: PNM only: the largest sample value and where the samples start.
    maxval: int = 0
    data_offset: int = 0
    #: TIFF only: (offset, bytes) that set the orientation tag to 1 in a copy of the file. OpenCV's
    #: TIFF decoder turns the image itself, whatever the flags say; this keeps one place that does.
    upright_patch: tuple[int, bytes] | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes | memoryview, max_pixels: int | None = None) -> ImageHeader:
    """Describe ``data`` from its header; raise a one-line :class:`ImageError` if it is not a readable image.

    With ``max_pixels``, an image larger than that is refused as soon as its
    size is read, before the rest of the file is walked.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    if len(data) == 0:
        raise ImageReadError("empty file")
    reader, name = _sniff(bytes(data[:32]))
    try:
        return reader(data, max_pixels if max_pixels is not None else 1 << 62)
    except ImageError:
        raise
    except (struct.error, IndexError, ValueError, OverflowError) as exc:  # a reader's bounds check missed
        raise ImageReadError(f"corrupt {name} header ({type(exc).__name__})") from None


# --- sniffing -----------------------------------------------------------------
def _sniff(head: bytes):
    if head.startswith(b"\xff\xd8\xff"):
        return _jpeg, "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png, "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _gif, "GIF"
    if head.startswith(b"BM"):
        return _bmp, "BMP"
    if len(head) >= 2 and head[0] == 0x50 and 0x31 <= head[1] <= 0x36:  # P1 .. P6
        return _pnm, "PNM"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff, "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp, "WebP"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace")
        kind = "AVIF" if brand.startswith("avi") else "HEIC/HEIF" if brand[:3] in ("hei", "hev", "mif", "msf") else None
        if kind:
            raise ImageUnsupportedError(f"{kind} images are not supported; export the photo as JPEG")
    if head.startswith(b"\x00\x00\x00\x0cjP  ") or head.startswith(b"\xff\x4f\xff\x51"):
        raise ImageUnsupportedError("JPEG 2000 is not supported; use JPEG or PNG")
    if head[:2] in (b"P7", b"Pf", b"PF"):
        raise ImageUnsupportedError("PAM and PFM images are not supported; use PGM/PPM")
    raise ImageReadError(f"not a readable image: none of the kinds the door reads ({FORMATS})")


def too_large(fmt: str, width: int, height: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"{fmt} of {width}x{height} = {width * height / 1e6:.1f} MP; the limit is "
                              f"{max_pixels / 1e6:.1f} MP ([images] max_pixels)")


def _cap(fmt: str, width: int, height: int, cap: int) -> None:
    if width * height > cap:
        raise too_large(fmt, width, height, cap)


def _u16be(d, pos: int) -> int:
    if pos + 2 > len(d):
        raise ImageReadError("truncated header")
    return d[pos] << 8 | d[pos + 1]


# --- JPEG ---------------------------------------------------------------------
_SOF = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive", 0xC3: "lossless",
        0xC5: "hierarchical", 0xC6: "hierarchical", 0xC7: "hierarchical",
        0xC9: "arithmetic", 0xCA: "arithmetic", 0xCB: "arithmetic",
        0xCD: "arithmetic", 0xCE: "arithmetic", 0xCF: "arithmetic"}


def _jpeg(d: bytes, cap: int) -> ImageHeader:
    n, pos = len(d), 2
    frame: tuple[int, int, int, int, str] | None = None
    orientation, adobe_transform = None, None
    for _ in range(MAX_STEPS):
        if pos >= n:
            raise ImageReadError("truncated JPEG: ends before its image data")
        if d[pos] != 0xFF:
            raise ImageReadError(f"corrupt JPEG: no marker at byte {pos}")
        while pos < n and d[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise ImageReadError("truncated JPEG: ends before its image data")
        marker = d[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            continue
        if marker in (0x00, 0xD8, 0xD9):
            raise ImageReadError("corrupt JPEG: no image data before its end")
        length = _u16be(d, pos)
        if length < 2:
            raise ImageReadError("corrupt JPEG: segment length below 2")
        if pos + length > n:
            raise ImageReadError("truncated JPEG: a segment runs past the end of the file")
        seg = d[pos + 2:pos + length]
        if marker == 0xE1 and orientation is None and bytes(seg[:6]) == b"Exif\x00\x00":
            orientation = exif_orientation(seg[6:])
        elif marker == 0xEE and bytes(seg[:5]) == b"Adobe" and len(seg) >= 12:
            adobe_transform = seg[11]
        elif marker in _SOF:
            if frame is not None:
                raise ImageReadError("corrupt JPEG: two frame headers")
            if len(seg) < 6:
                raise ImageReadError("corrupt JPEG: short frame header")
            precision, height, width, ncomp = seg[0], _u16be(seg, 1), _u16be(seg, 3), seg[5]
            if width == 0 or height == 0:
                raise ImageReadError(f"corrupt JPEG: frame header gives {width}x{height} pixels")
            _cap("JPEG", width, height, cap)
            frame = (width, height, precision, ncomp, _SOF[marker])
        elif marker == 0xDA:  # start of scan: the entropy-coded data follows
            if frame is None:
                raise ImageReadError("corrupt JPEG: image data before its frame header")
            if d.find(b"\xff\xd9", pos + length) < 0:
                raise ImageReadError("truncated JPEG: no end-of-image marker after its data")
            width, height, precision, ncomp, variant = frame
            if ncomp == 4:
                colour = "ycck" if adobe_transform == 2 else "cmyk"
            else:
                colour = {1: "grey", 3: "rgb"}.get(ncomp, f"{ncomp}-component")
            return ImageHeader("jpeg", width, height, bits=precision, colour=colour,
                               orientation=orientation or 1, variant=variant)
        pos += length
    raise ImageReadError("corrupt JPEG: too many segments")


# --- PNG ----------------------------------------------------------------------
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_COLOUR = {0: "grey", 2: "rgb", 3: "palette", 4: "grey", 6: "rgb"}


def _png(d: bytes, cap: int) -> ImageHeader:
    n, pos = len(d), 8
    ihdr: tuple[int, ...] | None = None
    frames, orientation, has_idat = 1, 1, False
    for step in range(MAX_STEPS):
        if pos + 8 > n:
            raise ImageReadError("truncated PNG: ends before its IEND chunk")
        length, ctype = struct.unpack_from(">I4s", d, pos)
        if length > 0x7FFFFFFF or not ctype.isalpha():
            raise ImageReadError(f"corrupt PNG: bad chunk at byte {pos}")
        end = pos + 12 + length
        if end > n:
            raise ImageReadError(f"truncated PNG: chunk {ctype.decode()} runs past the end of the file")
        if zlib.crc32(d[pos + 4:pos + 8 + length]) != struct.unpack_from(">I", d, pos + 8 + length)[0]:
            raise ImageReadError(f"corrupt PNG: chunk {ctype.decode()} fails its CRC")
        body = d[pos + 8:pos + 8 + length]
        if step == 0:
            if ctype != b"IHDR" or length != 13:
                raise ImageReadError("corrupt PNG: does not start with IHDR")
            ihdr = struct.unpack_from(">IIBBBBB", body, 0)
            _cap("PNG", ihdr[0], ihdr[1], cap)
        elif ctype == b"acTL" and length >= 8:
            frames = max(1, struct.unpack_from(">I", body, 0)[0])
        elif ctype == b"eXIf":
            orientation = exif_orientation(body)
        elif ctype == b"IDAT":
            has_idat = True
        elif ctype == b"IEND":
            break
        pos = end
    else:
        raise ImageReadError("corrupt PNG: too many chunks")
    assert ihdr is not None
    width, height, depth, ctype_, _compression, _filter, interlace = ihdr
    if not (0 < width <= 0x7FFFFFFF and 0 < height <= 0x7FFFFFFF):
        raise ImageReadError(f"corrupt PNG: IHDR gives {width}x{height} pixels")
    if depth not in _PNG_DEPTHS.get(ctype_, ()):
        raise ImageReadError(f"corrupt PNG: colour type {ctype_} with bit depth {depth}")
    if not has_idat:
        raise ImageReadError("corrupt PNG: no image data (IDAT)")
    return ImageHeader("png", width, height, bits=depth, colour=_PNG_COLOUR[ctype_], frames=frames,
                       orientation=orientation, variant="interlaced" if interlace else "")


# --- GIF ----------------------------------------------------------------------
def _gif(d: bytes, cap: int) -> ImageHeader:
    n = len(d)
    if n < 13:
        raise ImageReadError("truncated GIF header")
    width, height, flags = struct.unpack_from("<HHB", d, 6)
    if width == 0 or height == 0:
        raise ImageReadError(f"corrupt GIF: screen of {width}x{height} pixels")
    _cap("GIF", width, height, cap)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames, steps = 0, 0

    def skip_sub_blocks(pos: int) -> int:
        nonlocal steps
        while True:
            steps += 1
            if steps > MAX_STEPS:
                raise ImageReadError("corrupt GIF: too many data blocks")
            if pos >= n:
                raise ImageReadError("truncated GIF: ends inside a data block")
            size = d[pos]
            pos += 1 + size
            if size == 0:
                return pos

    while True:
        if pos >= n:
            raise ImageReadError("truncated GIF: no trailer")
        block = d[pos]
        if block == 0x3B:
            break
        if block == 0x21:  # extension: label, then sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif block == 0x2C:  # image descriptor
            if pos + 10 > n:
                raise ImageReadError("truncated GIF: ends inside an image descriptor")
            left, top, w, h, fl = struct.unpack_from("<HHHHB", d, pos + 1)
            if w == 0 or h == 0 or left + w > width or top + h > height:
                raise ImageReadError(f"corrupt GIF: a {w}x{h} frame at ({left}, {top}) outside the {width}x{height} screen")
            pos += 10 + (3 << ((fl & 7) + 1) if fl & 0x80 else 0) + 1  # local colour table, LZW code size
            pos = skip_sub_blocks(pos)
            frames += 1
        else:
            raise ImageReadError(f"corrupt GIF: unexpected block 0x{block:02x} at byte {pos}")
    if frames == 0:
        raise ImageReadError("corrupt GIF: no image in it")
    return ImageHeader("gif", width, height, colour="palette", frames=frames)


# --- BMP ----------------------------------------------------------------------
_BMP_COMPRESSION = {0: "", 1: "rle", 2: "rle", 3: "", 4: "jpeg", 5: "png", 6: ""}


def _bmp(d: bytes, cap: int) -> ImageHeader:
    n = len(d)
    if n < 26:
        raise ImageReadError("truncated BMP header")
    offset, dib = struct.unpack_from("<I", d, 10)[0], struct.unpack_from("<I", d, 14)[0]
    if dib == 12:
        width, height, _planes, bpp = struct.unpack_from("<HHHH", d, 18)
        compression = 0
    elif dib in (40, 52, 56, 64, 108, 124):
        if n < 14 + 20:
            raise ImageReadError("truncated BMP header")
        width, height, _planes, bpp, compression = struct.unpack_from("<iiHHI", d, 18)
    else:
        raise ImageReadError(f"corrupt BMP: unknown header size {dib}")
    height = abs(height)  # negative: stored top-down
    if width <= 0 or height == 0:
        raise ImageReadError(f"corrupt BMP: {width}x{height} pixels")
    _cap("BMP", width, height, cap)
    if bpp not in (1, 4, 8, 16, 24, 32):
        raise ImageReadError(f"corrupt BMP: {bpp} bits per pixel")
    if compression not in _BMP_COMPRESSION:
        raise ImageReadError(f"corrupt BMP: compression {compression}")
    variant = _BMP_COMPRESSION[compression]
    if variant == "":
        stride = (width * bpp + 31) // 32 * 4
        if offset + stride * height > n:
            raise ImageReadError("truncated BMP: fewer pixel bytes than its header promises")
    return ImageHeader("bmp", width, height, colour="palette" if bpp <= 8 else "rgb", variant=variant)


# --- PBM / PGM / PPM ------------------------------------------------------------
# Possessive quantifiers: whitespace or a comment, then digits; no backtracking (no ReDoS).
_PNM_TOKEN = re.compile(rb"(?:[ \t\r\n\f\v]|#[^\r\n]*+)++([0-9]{1,10})(?![0-9])")
_PNM_HEADER_MAX = 65536


def _pnm(d: bytes, cap: int) -> ImageHeader:
    kind = d[1] - ord("0")
    head = bytes(d[:_PNM_HEADER_MAX])
    pos, values = 2, []
    for _ in range(2 if kind in (1, 4) else 3):
        m = _PNM_TOKEN.match(head, pos)
        if m is None:
            raise ImageReadError("truncated or corrupt PNM header")
        values.append(int(m.group(1)))
        pos = m.end()
    width, height = values[0], values[1]
    maxval = values[2] if len(values) == 3 else 1
    if width == 0 or height == 0 or not 1 <= maxval <= 65535:
        raise ImageReadError(f"corrupt PNM header: {width}x{height}, maxval {maxval}")
    _cap("PNM", width, height, cap)
    channels = 3 if kind in (3, 6) else 1
    bits = 1 if kind in (1, 4) else 16 if maxval > 255 else 8
    header = ImageHeader("pnm", width, height, bits=bits, colour="rgb" if channels == 3 else "grey",
                         variant=f"P{kind}", maxval=maxval, data_offset=pos + 1)
    if kind >= 4:  # binary: one whitespace byte, then exactly this many bytes
        if pos >= len(d) or d[pos] not in b" \t\r\n\f\v":
            raise ImageReadError("corrupt PNM header: no whitespace before the samples")
        need = (width + 7) // 8 * height if kind == 4 else width * height * channels * (2 if maxval > 255 else 1)
        if pos + 1 + need > len(d):
            raise ImageReadError("truncated PNM: fewer samples than its header promises")
    return header


# --- TIFF ---------------------------------------------------------------------
_TIFF_COLOUR = {0: "grey", 1: "grey", 2: "rgb", 3: "palette", 4: "mask", 5: "cmyk", 6: "rgb",
                8: "lab", 9: "lab", 10: "lab", 32844: "logl", 32845: "logluv"}
_TIFF_TAGS = frozenset({256, 257, 258, 262, 273, 274, 277, 279, 324, 325})


def _tiff(d: bytes, cap: int) -> ImageHeader:
    order = byte_order(d)
    ifd = read_ifd(d, first_ifd_offset(d, order), order, _TIFF_TAGS)
    width, height = ifd.first(256, 0), ifd.first(257, 0)
    if not width or not height or width < 0 or height < 0:
        raise ImageReadError(f"corrupt TIFF: {width}x{height} pixels")
    _cap("TIFF", width, height, cap)
    offsets, counts = ifd.values.get(273), ifd.values.get(279)
    if offsets is None:
        offsets, counts = ifd.values.get(324), ifd.values.get(325)
    if offsets is None or counts is None or offsets.size == 0 or offsets.size != counts.size:
        raise ImageReadError("corrupt TIFF: no valid strip or tile table")
    if int((offsets + counts).max()) > len(d) or int(offsets.min()) < 0 or int(counts.min()) < 0:
        raise ImageReadError("truncated TIFF: image data runs past the end of the file")
    bits = ifd.values.get(258)
    photometric = ifd.first(262, -1)
    orientation = ifd.first(274, 1) or 1
    patch = None
    if 274 in ifd.where and orientation != 1:
        at, size = ifd.where[274]
        patch = (at, (1).to_bytes(size, "little" if order == "<" else "big"))
    return ImageHeader("tiff", width, height, bits=int(bits.max()) if bits is not None and bits.size else 1,
                       colour=_TIFF_COLOUR.get(photometric, f"photometric {photometric}"),
                       frames=2 if ifd.next_offset else 1,
                       orientation=orientation if 1 <= orientation <= 8 else 1, upright_patch=patch)


# --- WebP ---------------------------------------------------------------------
def _webp(d: bytes, cap: int) -> ImageHeader:
    n = len(d)
    riff = struct.unpack_from("<I", d, 4)[0]
    if riff < 4 or riff + 8 > n:
        raise ImageReadError("truncated WebP: RIFF size past the end of the file")
    end, pos = riff + 8, 12
    canvas: tuple[int, int] | None = None
    bitstreams: list[tuple[int, int, str]] = []
    animated, frames, orientation = False, 0, 1
    for _ in range(MAX_STEPS):
        if pos + 8 > end:
            break
        fourcc, size = bytes(d[pos:pos + 4]), struct.unpack_from("<I", d, pos + 4)[0]
        body = d[pos + 8:pos + 8 + size]
        if pos + 8 + size > end:
            raise ImageReadError(f"truncated WebP: chunk {fourcc!r} runs past the end")
        if fourcc == b"VP8X" and pos == 12 and size >= 10:
            animated = bool(body[0] & 0x02)
            canvas = (1 + (body[4] | body[5] << 8 | body[6] << 16), 1 + (body[7] | body[8] << 8 | body[9] << 16))
            _cap("WebP", *canvas, cap)
        elif fourcc == b"VP8 ":
            if size < 10 or bytes(body[3:6]) != b"\x9d\x01\x2a":
                raise ImageReadError("corrupt WebP: bad VP8 frame header")
            w, h = struct.unpack_from("<HH", body, 6)
            bitstreams.append((w & 0x3FFF, h & 0x3FFF, "lossy"))
            _cap("WebP", w & 0x3FFF, h & 0x3FFF, cap)
        elif fourcc == b"VP8L":
            if size < 5 or body[0] != 0x2F:
                raise ImageReadError("corrupt WebP: bad VP8L header")
            bits = struct.unpack_from("<I", body, 1)[0]
            bitstreams.append(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "lossless"))
            _cap("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, cap)
        elif fourcc == b"ANMF":
            frames += 1
        elif fourcc == b"EXIF":
            orientation = exif_orientation(body)
        pos += 8 + size + (size & 1)
    else:
        raise ImageReadError("corrupt WebP: too many chunks")
    if animated or frames:
        w, h = canvas or (0, 0)
        return ImageHeader("webp", w, h, frames=max(frames, 2), orientation=orientation, variant="animated")
    if not bitstreams:
        raise ImageReadError("corrupt WebP: no image data")
    w, h, variant = bitstreams[0]
    if w == 0 or h == 0 or (canvas is not None and canvas != (w, h)):
        raise ImageReadError(f"corrupt WebP: {w}x{h} image on a canvas of {canvas}")
    return ImageHeader("webp", w, h, orientation=orientation, variant=variant)
