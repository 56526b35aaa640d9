"""The image loader on honest files: every accepted format, 16-bit conversion, EXIF orientation."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from facegate.edge import imageio
from facegate.edge.errors import ImageReadError, ImageTooLargeError
from facegate.edge.image import ImageLimits, decode_image, load_image, read_header

from .. import imagefiles as files

RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 255, (30, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".ppm", ".tiff", ".webp"])
def test_lossless_formats_come_back_pixel_exact(tmp_path, ext):
    path = tmp_path / f"x{ext}"
    path.write_bytes(files.encode(PHOTO, ext))
    assert np.array_equal(load_image(path), PHOTO)


def test_jpeg_gif_and_pbm_load_as_bgr_uint8_of_their_size(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    (tmp_path / "a.jpg").write_bytes(files.encode(PHOTO, ".jpg"))
    (tmp_path / "a.pbm").write_bytes(files.encode(PHOTO[..., 0], ".pbm"))
    bio = io.BytesIO()
    Image.fromarray(PHOTO).save(bio, "GIF")
    (tmp_path / "a.gif").write_bytes(bio.getvalue())
    for name in ("a.jpg", "a.pbm", "a.gif"):
        img = load_image(tmp_path / name)
        assert img.shape == (30, 40, 3) and img.dtype == np.uint8, name
    assert np.abs(load_image(tmp_path / "a.jpg").astype(int) - PHOTO).mean() < 60


def test_grey_bgra_and_16_bit_files_all_come_back_as_bgr_uint8(tmp_path):
    grey = RNG.integers(0, 255, (40, 50), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([grey, grey, grey, np.full_like(grey, 255)]))
    cv2.imwrite(str(tmp_path / "w.png"), grey.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "w.tiff"), grey.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "w.pgm"), grey.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "p.pgm"), grey)
    for name in ("g.png", "a.png", "w.png", "w.tiff", "w.pgm", "p.pgm"):
        img = load_image(tmp_path / name)
        assert img.shape == (40, 50, 3) and img.dtype == np.uint8
        assert np.array_equal(img[..., 0], grey), name


def test_16_bit_samples_keep_their_high_byte_within_one_level_of_exact():
    deep = RNG.integers(0, 65536, (20, 30), dtype=np.uint16)
    exact = np.round(deep / 257.0)
    for ext in (".png", ".tiff", ".pgm"):
        out = decode_image(files.encode(deep, ext))[..., 0].astype(int)
        assert np.abs(out - exact).max() <= 1, ext
    assert read_header(files.encode(deep, ".png")).bits == 16


@pytest.mark.parametrize("maxval", [1, 100, 255, 1000, 65535])
def test_pgm_samples_are_scaled_by_their_maxval(maxval):
    values = (np.arange(24 * 10) % (maxval + 1)).reshape(10, 24)
    dtype = ">u2" if maxval > 255 else np.uint8
    data = files.pnm(24, 10, maxval, "P5", values.astype(dtype).tobytes())
    out = decode_image(data)[..., 0].astype(int)
    assert np.abs(out - values * 255.0 / maxval).max() <= 0.5 + 1e-9


def test_ppm_is_read_as_rgb_and_turned_into_bgr():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 200  # red
    out = decode_image(files.pnm(3, 2, 255, "P6", rgb.tobytes()))
    assert (out[..., 2] == 200).all() and (out[..., :2] == 0).all()


# --- EXIF orientation ----------------------------------------------------------------
def _pillow_upright(data: bytes) -> np.ndarray:
    """An independent oracle: Pillow's own reading of the EXIF orientation."""
    Image = pytest.importorskip("PIL.Image")
    ImageOps = pytest.importorskip("PIL.ImageOps")
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)).convert("RGB"))
    return np.asarray(img)[..., ::-1]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("big_endian", [False, True])
def test_every_exif_orientation_is_turned_upright_as_pillow_turns_it(orientation, big_endian):
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:16, :24] = (0, 0, 255)  # a red block in one corner, a green bar along one edge
    stored[:, -8:] = (0, 255, 0)
    data = files.with_exif(files.encode(stored, ".jpg"), orientation, big_endian)
    assert read_header(data).orientation == orientation
    ours = decode_image(data)
    theirs = _pillow_upright(data)
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs).mean() < 3, orientation


def test_tiff_and_png_orientation_is_honoured_too():
    tall = np.zeros((6, 4), np.uint8)
    tall[0, 0] = 255
    data = files.tiff(4, 6, samples=tall.tobytes(), orientation=6)  # stored turned: rotate 90 clockwise
    out = decode_image(data)[..., 0]
    assert out.shape == (4, 6) and out[0, -1] == 255
    exif = files.png_chunk(b"eXIf", files.exif_block(3)[6:])
    png = files.encode(tall, ".png")
    png = png[:33] + exif + png[33:]  # after IHDR
    assert decode_image(png)[-1, -1, 0] == 255


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_and_webp_orientation_matches_pillow(orientation):
    stored = np.zeros((6, 4), np.uint8)
    stored[0, 0], stored[0, 1] = 255, 100
    data = files.tiff(4, 6, samples=stored.tobytes(), orientation=orientation)
    assert np.array_equal(decode_image(data)[..., 0], _pillow_upright(data)[..., 0])
    Image = pytest.importorskip("PIL.Image")
    exif = Image.Exif()
    exif[274] = orientation
    bio = io.BytesIO()
    Image.fromarray(np.dstack([stored] * 3)).save(bio, "WEBP", lossless=True, exif=exif.tobytes())
    assert read_header(bio.getvalue()).orientation == orientation
    assert np.array_equal(decode_image(bio.getvalue()), _pillow_upright(bio.getvalue()))


def test_a_broken_exif_block_leaves_the_photo_as_stored():
    jpeg = files.encode(PHOTO, ".jpg")
    broken = jpeg[:2] + b"\xff\xe1\x00\x0cExif\x00\x00II*\x00" + jpeg[2:]
    assert read_header(broken).orientation == 1
    assert decode_image(broken).shape == PHOTO.shape


def test_a_sideways_phone_photo_is_enrolled_upright():
    """A face photo stored sideways with orientation 6 is found upright: eyes level, above the mouth."""
    from ..helpers import need_lfw

    root = need_lfw()
    face = next(iter(sorted((root / "lfw").rglob("*.jpg"))), None) if (root / "lfw").is_dir() else None
    face = face or next(iter(sorted(root.rglob("*.jpg"))), None)
    if face is None:
        pytest.skip("no LFW photo")
    from facegate.edge.config import DetectorConfig
    from facegate.edge.detect import create_detector

    upright = load_image(face)
    sideways = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)  # how the sensor stored it
    data = files.with_exif(files.encode(sideways, ".jpg"), 6)
    detector = create_detector(DetectorConfig(min_face_size=40))
    loaded = decode_image(data, "phone.jpg")
    assert loaded.shape == upright.shape
    faces = detector.detect(loaded)
    assert faces, "no face found in the photo turned upright"
    (lx, ly), (rx, ry), _nose, (mlx, mly), (mrx, mry) = faces[0].landmarks
    assert abs(ly - ry) < abs(lx - rx) and max(ly, ry) < min(mly, mry)  # eyes level and above the mouth


# --- the old entry points still work ---------------------------------------------------
def test_imageio_keeps_its_entry_points_and_caps(tmp_path):
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((300, 400, 3), np.uint8))
    with pytest.raises(ImageTooLargeError, match="400x300"):
        imageio.load_image(tmp_path / "big.png", ImageLimits(max_pixels=100_000))
    with pytest.raises(ImageTooLargeError, match="MB"):
        imageio.load_image(tmp_path / "big.png", ImageLimits(max_file_bytes=10))


def test_to_bgr_accepts_float_images_in_0_1():
    out = imageio.to_bgr(np.ones((4, 4, 3), np.float32) * 0.5)
    assert out.dtype == np.uint8 and int(out[0, 0, 0]) in (127, 128)


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_ascii_pnm_and_top_down_bmp_load_the_right_way_up():
    assert np.array_equal(decode_image(b"P2\n3 1\n100\n0 50 100\n")[0, :, 0], [0, 127, 255])
    assert np.array_equal(decode_image(b"P3\n1 1\n255\n1 2 3\n")[0, 0], [3, 2, 1])  # RGB in, BGR out
    assert np.array_equal(decode_image(b"P1\n3 1\n1 0 1\n")[0, :, 0], [0, 255, 0])  # 1 is black
    bottom_up = files.encode(PHOTO, ".bmp")
    stride = 40 * 3  # already a multiple of 4
    rows = bottom_up[54:54 + stride * 30]
    flipped = b"".join(rows[i * stride:(i + 1) * stride] for i in reversed(range(30)))
    top_down = bottom_up[:22] + (-30).to_bytes(4, "little", signed=True) + bottom_up[26:54] + flipped
    assert np.array_equal(decode_image(top_down), PHOTO)
