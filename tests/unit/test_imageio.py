import cv2
import numpy as np
import pytest

from facegate.edge import imageio
from facegate.edge.errors import ImageReadError, ImageTooLargeError


def test_grey_bgra_and_16_bit_files_all_come_back_as_bgr_uint8(tmp_path):
    grey = np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([grey, grey, grey, np.full_like(grey, 255)]))
    cv2.imwrite(str(tmp_path / "w.png"), grey.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "p.pgm"), grey)
    for name in ("g.png", "a.png", "w.png", "p.pgm"):
        img = imageio.load_image(tmp_path / name)
        assert img.shape == (40, 50, 3) and img.dtype == np.uint8
        assert np.array_equal(img[..., 0], grey), name


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(b"GIF89a not really"), "not a readable image"),
    (lambda p: p.mkdir(), "not a file"),
])
def test_unreadable_inputs_get_a_clear_error(tmp_path, make, message):
    path = tmp_path / "x.jpg"
    make(path)
    with pytest.raises(ImageReadError, match=message):
        imageio.load_image(path)


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        imageio.load_image(tmp_path / "nope.jpg")


def test_huge_images_are_refused_before_they_are_used(tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((300, 400, 3), np.uint8))
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100_000)
    with pytest.raises(ImageTooLargeError, match="400x300"):
        imageio.load_image(tmp_path / "big.png")
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 10)
    with pytest.raises(ImageTooLargeError, match="MB"):
        imageio.load_image(tmp_path / "big.png")


def test_to_bgr_accepts_float_images_in_0_1():
    out = imageio.to_bgr(np.ones((4, 4, 3), np.float32) * 0.5)
    assert out.dtype == np.uint8 and int(out[0, 0, 0]) in (127, 128)
