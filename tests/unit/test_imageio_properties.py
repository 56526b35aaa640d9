"""Properties of the image loader: any bytes in, either an image within the caps or one ImageError line out.

Never another exception, never a decoder call for a header over the cap,
and never memory in proportion to what a header claims.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from facegate.edge.errors import ImageError, ImageTooLargeError
from facegate.edge.image import ImageLimits, decode_image, load, read_header

from .. import imagefiles as files

LIMITS = ImageLimits(max_pixels=250_000, max_file_bytes=2_000_000)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_PHOTO = np.random.default_rng(3).integers(0, 255, (12, 16, 3), dtype=np.uint8)
GOOD = {ext: files.encode(_PHOTO[..., 0] if ext in (".pgm", ".pbm") else _PHOTO, ext)
        for ext in (".jpg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".tiff", ".webp")}
GOOD[".gif"] = files.gif(16, 12)
MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"P5", b"P6\n", b"P4 ", b"P2", b"II*\x00",
          b"MM\x00*", b"RIFF\x00\x01\x00\x00WEBP", b"RIFF\x00\x01\x00\x00WEBPVP8X"]


@contextlib.contextmanager
def watched_decoder():
    """Record the pixel count each decoder call was allowed, by the header the loader read."""
    calls: list[int] = []
    real = load.cv2.imdecode

    def spy(buf, flags):
        calls.append(read_header(bytes(buf)).pixels)
        return real(buf, flags)

    with mock.patch.object(load.cv2, "imdecode", spy):
        yield calls


def outcome(data: bytes) -> np.ndarray | ImageError:
    """The property itself: an image within the caps or one ImageError line, nothing else."""
    with watched_decoder() as calls:
        try:
            image = decode_image(data, "fuzz.img", LIMITS)
        except ImageError as exc:
            text = str(exc)
            assert "\n" not in text and text.startswith("fuzz.img: "), text
            result: np.ndarray | ImageError = exc
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            assert image.shape[0] * image.shape[1] <= LIMITS.max_pixels
            result = image
    assert all(pixels <= LIMITS.max_pixels for pixels in calls), calls
    return result


@FAST
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data):
    outcome(data)


@FAST
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_arbitrary_bytes_behind_every_magic_number(magic, tail):
    outcome(magic + tail)


@FAST
@given(st.sampled_from(sorted(GOOD)), st.data())
def test_good_files_with_bytes_flipped_cut_or_inserted(ext, data):
    buf = bytearray(GOOD[ext])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[at] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif buf:
            del buf[at:at + data.draw(st.integers(1, 8))]
    outcome(bytes(buf))


def _claims(fmt: str, width: int, height: int, extra: int) -> bytes:
    if fmt == "png":
        return files.png(width, height, depth=(1, 2, 4, 8, 16)[extra % 5], colour=(0, 2, 3, 4, 6)[extra % 5])
    if fmt == "jpeg":
        return files.jpeg_sof(width, height, components=(1, 3, 4)[extra % 3], marker=(0xC0, 0xC1, 0xC2)[extra % 3])
    if fmt == "pnm":
        return files.pnm(width, height, 1 + extra % 65535, ("P2", "P3", "P5", "P6")[extra % 4], b"\0" * 64)
    if fmt == "bmp":
        return files.bmp(width - (1 << 31) if extra % 2 else width, -height if extra % 3 else height,
                         bpp=(1, 4, 8, 16, 24, 32)[extra % 6], pixels=b"\0" * 64)
    if fmt == "tiff":
        return files.tiff(width, height, photometric=extra % 7, bits=(1, 8, 16)[extra % 3])
    if fmt == "webp":
        return files.webp_vp8x(1 + width % (1 << 24), 1 + height % (1 << 24), flags=extra & 0xFF)
    if fmt == "webpl":
        return files.webp_vp8l(1 + width % (1 << 14), 1 + height % (1 << 14))
    return files.gif(width & 0xFFFF, height & 0xFFFF, frames=1 + extra % 2)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["png", "jpeg", "pnm", "bmp", "tiff", "webp", "webpl", "gif"]),
       st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 32) - 1), st.integers(0, 1 << 16))
def test_arbitrary_header_fields_never_reach_the_decoder_over_the_cap(fmt, width, height, extra):
    if fmt == "jpeg":
        width, height = width & 0xFFFF, height & 0xFFFF
    elif fmt in ("pnm", "bmp", "tiff"):
        width, height = width & 0x7FFFFFFF, height & 0x7FFFFFFF
    data = _claims(fmt, width, height, extra)
    result = outcome(data)
    if isinstance(result, np.ndarray):
        return
    header = None
    with contextlib.suppress(ImageError):
        header = read_header(data)
    if header is not None and header.pixels > LIMITS.max_pixels:
        assert isinstance(result, ImageTooLargeError)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["png", "jpeg", "pnm", "bmp", "tiff", "webp", "gif"]),
       st.integers(20_000, 65_535), st.integers(20_000, 65_535))
def test_memory_stays_far_below_what_a_huge_header_claims(fmt, width, height):
    data = _claims(fmt, width, height, 0)
    assume(width * height > LIMITS.max_pixels)
    tracemalloc.start()
    try:
        result = outcome(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, ImageError)
    assert peak < 1_000_000, (fmt, width, height, peak)  # the claim was at least 400 MP x 3 bytes
