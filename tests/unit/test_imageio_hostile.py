"""The image loader on hostile and broken input: refused from the header, in one line, cheaply."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from facegate.edge.errors import ImageError, ImageReadError, ImageTooLargeError, ImageUnsupportedError
from facegate.edge.image import ImageLimits, decode_image, load, load_image, read_header

from .. import imagefiles as files

PHOTO = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if anything reaches the decoder."""
    def refuse(*args, **kwargs):
        raise AssertionError("the decoder was called")
    monkeypatch.setattr(load.cv2, "imdecode", refuse)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "\r" not in text and text.strip() == text, text
    return text


# --- huge dimensions, every format, refused before decoding ------------------------------
HUGE = {
    "png 60000x60000": files.png(60000, 60000),
    "palette png 30000x30000": files.png(30000, 30000, depth=1, colour=3, palette=b"\0\0\0"),
    "jpeg 65535x65535": files.jpeg_sof(65535, 65535),
    "progressive jpeg 20000x20000": files.jpeg_sof(20000, 20000, marker=0xC2),
    "pgm 100000x100000": files.pnm(100000, 100000, 255, "P5", b"\0" * 64)[:40],
    "ppm 9000x9000": files.pnm(9000, 9000, 65535, "P6"),
    "ascii pgm 100000x100000": files.pnm(100000, 100000, 255, "P2", b"0 0 0"),
    "tiff 50000x50000": files.tiff(50000, 50000),
    "webp vp8x 16777216x16777216": files.webp_vp8x(1 << 24, 1 << 24),
    "webp vp8l 16384x16384": files.webp_vp8l(16384, 16384),
    "bmp 70000x70000": files.bmp(70000, 70000),
    "bmp top-down 70000x-70000": files.bmp(70000, -70000),
    "gif 65535x65535": files.gif(65535, 65535),
}


@pytest.mark.parametrize("name", HUGE)
def test_huge_dimensions_are_refused_from_the_header(name, no_decoding):
    data = HUGE[name]
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data, f"{name}.img")
    text = one_line(info.value)
    assert text.startswith(f"{name}.img: ") and "MP; the limit is 40.0 MP ([images] max_pixels)" in text
    assert isinstance(info.value, ValueError)


def test_the_pixel_cap_is_configurable_and_exact():
    header = read_header(files.encode(PHOTO, ".png"))
    assert header.pixels == 1200
    assert decode_image(files.encode(PHOTO, ".png"), limits=ImageLimits(max_pixels=1200)).shape == PHOTO.shape
    with pytest.raises(ImageTooLargeError, match="40x30 = 0.0 MP"):
        decode_image(files.encode(PHOTO, ".png"), limits=ImageLimits(max_pixels=1199))


def test_refusing_the_30000_square_palette_png_costs_kilobytes_not_gigabytes(tmp_path):
    """Peak memory measured in a fresh process: refusing the bomb vs decoding a 16 MP one under the cap."""
    bomb = files.palette_bomb_png(30000, 30000)
    assert len(bomb) < 120_000  # the 109 KB file of the issue: 5.4 GB when it was decoded first
    (tmp_path / "bomb.png").write_bytes(bomb)
    (tmp_path / "fine.png").write_bytes(files.palette_bomb_png(4000, 4000))
    script = textwrap.dedent("""
        import json, resource, sys, tracemalloc
        from facegate.edge.errors import ImageError
        from facegate.edge.image import load_image
        load_image(sys.argv[2])  # warm: every library loaded, allocator primed
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        try:
            shape = load_image(sys.argv[1]).shape
        except ImageError as exc:
            shape = str(exc)
        traced = tracemalloc.get_traced_memory()[1]
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"rss_grew_kb": after - before, "traced_peak": traced, "result": shape}))
    """)
    (tmp_path / "small.png").write_bytes(files.encode(PHOTO, ".png"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}

    def peak(path: str) -> dict:
        out = subprocess.run([sys.executable, "-c", script, path, str(tmp_path / "small.png")], env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    refused = peak(str(tmp_path / "bomb.png"))
    assert "30000x30000" in refused["result"]
    # Peak RSS can only under-count under memory pressure, so "grew under 8 MB" is a safe bound;
    # tracemalloc (numpy's buffers included) is exact: the file's bytes and a read buffer.
    assert refused["rss_grew_kb"] < 8 * 1024 and refused["traced_peak"] < 2_000_000, refused
    decoded = peak(str(tmp_path / "fine.png"))
    assert decoded["result"] == [4000, 4000, 3]
    assert decoded["traced_peak"] > 40_000_000, decoded  # the measure does see a 48 MB decode


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    path.write_bytes(files.encode(PHOTO, ".jpg"))
    monkeypatch.setattr(load.os, "open", lambda *a, **k: pytest.fail("opened"))
    with pytest.raises(ImageTooLargeError, match=r"big\.jpg: the file has 0\.0 MB; the limit is 0\.0 MB"):
        load_image(path, ImageLimits(max_file_bytes=100))


def test_bytes_over_the_size_cap_are_refused_by_decode_image_too(no_decoding):
    with pytest.raises(ImageTooLargeError, match="max_file_bytes"):
        decode_image(b"\xff\xd8\xff" + b"\0" * 200, limits=ImageLimits(max_file_bytes=100))


# --- kinds the door refuses ---------------------------------------------------------------
def _pillow(save) -> bytes:
    Image = pytest.importorskip("PIL.Image")
    bio = io.BytesIO()
    save(Image, bio)
    return bio.getvalue()


def _frames(Image):
    return [Image.new("RGB", (20, 10), (40 * i, 0, 0)) for i in range(3)]


REFUSED_KINDS = {
    "cmyk jpeg": (lambda I, b: I.new("CMYK", (16, 8), (0, 255, 255, 0)).save(b, "JPEG"), "CMYK JPEG"),
    "animated gif": (lambda I, b: _frames(I)[0].save(b, "GIF", save_all=True, append_images=_frames(I)[1:]),
                     "animated GIF"),
    "animated png": (lambda I, b: _frames(I)[0].save(b, "PNG", save_all=True, append_images=_frames(I)[1:]),
                     "animated PNG"),
    "animated webp": (lambda I, b: _frames(I)[0].save(b, "WEBP", save_all=True, append_images=_frames(I)[1:]),
                      "animated WebP"),
    "multi-page tiff": (lambda I, b: _frames(I)[0].save(b, "TIFF", save_all=True, append_images=_frames(I)[1:]),
                        "multi-page TIFF"),
    "cmyk tiff": (lambda I, b: I.new("CMYK", (16, 8)).save(b, "TIFF"), "CMYK TIFF"),
    "float tiff": (lambda I, b: I.new("F", (16, 8)).save(b, "TIFF"), "32-bit"),
}


@pytest.mark.parametrize("kind", REFUSED_KINDS)
def test_cmyk_animated_multi_page_and_float_images_are_refused_by_header(kind, no_decoding):
    save, words = REFUSED_KINDS[kind]
    with pytest.raises(ImageUnsupportedError) as info:
        decode_image(_pillow(save), "x")
    assert words in one_line(info.value)


def test_a_single_frame_gif_or_apng_is_an_ordinary_image():
    one = _pillow(lambda I, b: I.new("RGB", (20, 10), (200, 0, 0)).save(b, "PNG", save_all=True, append_images=[]))
    assert decode_image(one).shape == (10, 20, 3)
    still = _pillow(lambda I, b: I.new("RGB", (20, 10), (200, 0, 0)).save(b, "GIF"))
    assert decode_image(still).shape == (10, 20, 3)
    with pytest.raises(ImageUnsupportedError, match="animated GIF"):
        decode_image(files.gif(20, 10, frames=2))


@pytest.mark.parametrize("data, words", [
    (files.jpeg_sof(40, 30, marker=0xC3), "lossless JPEG"),
    (files.jpeg_sof(40, 30, marker=0xC9), "arithmetic JPEG"),
    (files.jpeg_sof(40, 30, precision=12), "12-bit"),
    (files.jpeg_sof(40, 30, components=2), "2-component"),
    (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "HEIC"),
    (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf", "AVIF"),
    (b"\0\0\0\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"P7\nWIDTH 4\n", "PAM"),
    (b"II+\x00\x08\x00\x00\x00", "BigTIFF"),
])
def test_other_kinds_get_a_named_refusal(data, words, no_decoding):
    with pytest.raises(ImageUnsupportedError, match=words):
        decode_image(data)


@pytest.mark.parametrize("data", [
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", b"<html><body>hello</body></html>", b"\0" * 4096, b"#!/bin/sh\nrm -rf /\n",
    b"PK\x03\x04" + b"\0" * 60, os.urandom(512), b"\xff\xd8", b"\x89PNG", b"GIF89a", b"BM", b"P5", b"RIFF\0\0\0\0WEBP",
])
def test_non_image_bytes_with_an_image_name_are_refused(tmp_path, data, no_decoding):
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert one_line(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".ppm", ".pgm", ".tiff", ".webp", ".pbm"])
def test_every_truncation_of_a_good_file_is_refused_cleanly(ext):
    image = PHOTO[..., 0] if ext in (".pgm", ".pbm") else PHOTO
    data = files.encode(image, ext)
    assert decode_image(data).shape == (30, 40, 3)
    for cut in sorted({1, 2, 3, 8, 16, 33, len(data) // 2, len(data) - 2, len(data) - 1}):
        with pytest.raises(ImageReadError, match="truncated|corrupt|not a readable image|damaged"):
            decode_image(data[:cut], f"cut{cut}")


def test_a_truncated_jpeg_is_not_decoded_into_a_half_grey_image(no_decoding):
    data = files.encode(PHOTO, ".jpg")
    with pytest.raises(ImageReadError, match="truncated JPEG: no end-of-image marker"):
        decode_image(data[: len(data) * 2 // 3])


def test_a_png_with_a_bad_crc_or_no_iend_is_refused(no_decoding):
    data = bytearray(files.encode(PHOTO, ".png"))
    data[45] ^= 0xFF  # inside IDAT
    with pytest.raises(ImageReadError, match="fails its CRC"):
        decode_image(bytes(data))
    good = files.encode(PHOTO, ".png")
    with pytest.raises(ImageReadError, match="truncated PNG"):
        decode_image(good[:-12])


def test_a_gif_frame_outside_its_screen_is_refused(no_decoding):
    data = bytearray(files.gif(20, 10))
    data[13 + 6 + 5:13 + 6 + 7] = (30).to_bytes(2, "little")  # the frame's width
    with pytest.raises(ImageReadError, match="outside the 20x10 screen"):
        decode_image(bytes(data))


def test_a_pnm_header_of_endless_whitespace_is_refused_in_linear_time(no_decoding):
    for junk in (b"P5" + b" " * 60000 + b"x", b"P5" + b"#" * 60000, b"P5\n1 1\n" + b"9" * 40):
        with pytest.raises(ImageReadError, match="PNM"):
            decode_image(junk)


def test_hostile_structure_walks_stop_after_a_bounded_number_of_steps(no_decoding):
    png = files.encode(PHOTO, ".png")
    idat_at = png.index(b"IDAT") - 4
    many = png[:idat_at] + files.png_chunk(b"tEXt", b"") * 250_000 + png[idat_at:]
    with pytest.raises(ImageReadError, match="too many chunks"):
        decode_image(many)
    gif = files.gif(20, 10)
    spam = gif[:-1] + (b"\x21\xfe" + b"\x01a" * 210_000 + b"\x00") + b"\x3b"
    with pytest.raises(ImageReadError, match="too many data blocks"):
        decode_image(spam)


def test_a_header_that_lies_about_the_pixel_data_is_refused():
    good = files.encode(PHOTO, ".png")
    body = good[16:29]  # IHDR's 13 bytes
    lying = good[:8] + files.png_chunk(b"IHDR", body[:4] + (31).to_bytes(4, "big") + body[8:]) + good[33:]
    assert read_header(lying).height == 31  # the pixel data holds 30 rows
    with pytest.raises(ImageReadError, match="PNG data the decoder could not read"):
        decode_image(lying)


# --- files that are not regular files, names that lie ---------------------------------------
def test_a_symbolic_link_is_refused_even_to_a_good_image(tmp_path):
    (tmp_path / "real.png").write_bytes(files.encode(PHOTO, ".png"))
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    with pytest.raises(ImageReadError, match=r"link\.png: is a symbolic link to .*real\.png; give the file itself"):
        load_image(tmp_path / "link.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageReadError, match="symbolic link"):
        load_image(tmp_path / "dangling.png")
    assert load_image(tmp_path / "real.png").shape == PHOTO.shape


def test_special_files_are_refused_without_being_opened(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.jpg").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.jpg"))
    monkeypatch.setattr(load.os, "open", lambda *a, **k: pytest.fail("opened"))
    cases = {"pipe.jpg": "a FIFO", "folder.jpg": "a directory", "sock.jpg": "a socket"}
    try:
        for name, kind in cases.items():
            with pytest.raises(ImageReadError, match=f"is {kind}, not an image file"):
                load_image(tmp_path / name)
        with pytest.raises(ImageReadError, match="is a character device"):
            load_image("/dev/zero")
    finally:
        sock.close()


def test_a_fifo_never_blocks_the_loader(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    result: list = []
    t = threading.Thread(target=lambda: result.append(pytest.raises(ImageReadError, load_image, tmp_path / "pipe.png")))
    t.start()
    t.join(5)
    assert not t.is_alive() and result


@pytest.mark.parametrize("name", ["a\nb.jpg", "evil\r\x1b[2Jx.jpg", "tab\there.jpg", "bell\x07.png",
                                  "photo\u202egpj.exe", "iso\u2066late.png", "del\x7f.png", "c1\x85.png"])
def test_control_and_bidi_characters_in_a_name_are_refused_in_one_escaped_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(files.encode(PHOTO, ".png"))
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    text = one_line(info.value)
    assert "control character" in text and "rename the file" in text
    assert text.isprintable()


def test_names_that_are_merely_unusual_load(tmp_path):
    for name in ("Zoë ünïcode.png", "日本語.png", "spaces and 'quotes'.png", "-dash.png", "pers\u200cian.png"):
        (tmp_path / name).write_bytes(files.encode(PHOTO, ".png"))
        assert load_image(tmp_path / name).shape == PHOTO.shape, name


def test_an_undecodable_name_is_shown_escaped_never_crashing_the_message(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/bad\xff\xfe.jpg"
    with pytest.raises(ImageReadError) as info:
        load_image(os.fsdecode(raw))
    text = one_line(info.value)
    text.encode("utf-8")  # no lone surrogates: printable to any UTF-8 terminal
    assert "\\udcff" in text and "no such file" in text


def test_dot_dot_in_a_path_is_the_path_the_user_gave(tmp_path):
    """Traversal is a matter for names the program builds; a path given on the command line is read as given."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b.png").write_bytes(files.encode(PHOTO, ".png"))
    assert load_image(tmp_path / "a" / ".." / "b.png").shape == PHOTO.shape


def test_a_replay_folder_skips_links_that_point_elsewhere(tmp_path, caplog):
    from facegate.edge.camera import ReplaySource

    (tmp_path / "secret").write_bytes(b"root:x:0:0")
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0.png").write_bytes(files.encode(PHOTO, ".png"))
    (frames / "1.png").symlink_to(tmp_path / "secret")
    with ReplaySource(frames) as source:
        got = []
        while (frame := source.read()) is not None:
            got.append(frame)
    assert len(got) == 1
    assert "symbolic link" in caplog.text


# --- the CLI: every image command refuses in one line --------------------------------------
def test_the_cli_refuses_hostile_images_in_one_line_with_exit_2(tmp_path, capsys):
    from facegate.edge.cli import EXIT_ERROR, main

    from ..helpers import tiny_bundle

    bundle = str(tiny_bundle(tmp_path / "bundle"))
    (tmp_path / "big.png").write_bytes(HUGE["png 60000x60000"])
    (tmp_path / "big.pgm").write_bytes(HUGE["pgm 100000x100000"])
    (tmp_path / "text.jpg").write_bytes(b"hello")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "text.jpg")
    gallery = str(tmp_path / "g.db")
    from facegate.edge.gallery import Gallery

    with Gallery(gallery):
        pass
    for image, words in (("big.png", "60000x60000"), ("big.pgm", "100000x100000"), ("text.jpg", "not a readable image"),
                         ("link.jpg", "symbolic link")):
        path = str(tmp_path / image)
        for argv in (["enroll", "alice", path], ["verify", "alice", path], ["identify", path]):
            code = main([*argv, "--gallery", gallery, "--embedder", bundle])
            err = capsys.readouterr().err
            assert code == EXIT_ERROR, (argv, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and words in err, (argv, err)
    assert not Path(gallery).exists() or "alice" not in Path(gallery).read_bytes().decode("latin-1")


def test_the_door_config_sets_the_caps_the_cli_applies(tmp_path, capsys):
    from facegate.edge.cli import EXIT_ERROR, main

    from ..helpers import tiny_bundle

    bundle = str(tiny_bundle(tmp_path / "bundle"))
    (tmp_path / "photo.png").write_bytes(files.encode(PHOTO, ".png"))
    (tmp_path / "door.toml").write_text("[images]\nmax_pixels = 1000\n")
    code = main(["embed", str(tmp_path / "photo.png"), "--config", str(tmp_path / "door.toml"), "--embedder", bundle])
    row = json.loads(capsys.readouterr().out.strip())
    assert code == EXIT_ERROR and row["error_type"] == "ImageTooLargeError" and "40x30" in row["error"]
