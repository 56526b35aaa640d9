"""Bad config files: each refused in one line that names the file, the line and the key."""

from __future__ import annotations

import os
import threading

import pytest

from facegate.edge.config import MAX_CONFIG_BYTES, Config
from facegate.edge.errors import ConfigError
from facegate.edge.image import ImageLimits


def _load(tmp_path, text: str) -> Config:
    path = tmp_path / "door.toml"
    path.write_text(text, encoding="utf-8")
    return Config.load(path)


@pytest.mark.parametrize("line, fragment", [
    ("max_pixels = 0", "images.max_pixels: expected an integer in 1..250000000, got 0"),
    ("max_pixels = 1_000_000_000", "images.max_pixels: expected an integer in 1..250000000"),
    ('max_pixels = "40MP"', "images.max_pixels: expected an integer in 1..250000000, got '40MP'"),
    ("max_pixels = 4.0e7", "images.max_pixels: expected an integer"),
    ("max_file_bytes = -1", "images.max_file_bytes: expected an integer in 1..500000000, got -1"),
    ("max_file_bytes = true", "images.max_file_bytes: expected an integer"),
    ("max_megapixels = 40", "images.max_megapixels: unknown key (set to 40) (did you mean 'max_pixels'?)"),
])
def test_image_caps_are_checked_like_every_other_setting(tmp_path, line, fragment):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, f"[images]\n{line}\n")
    assert str(info.value) == f"{tmp_path / 'door.toml'}:2: {fragment}" or fragment in str(info.value)
    assert str(info.value).startswith(f"{tmp_path / 'door.toml'}:2: images.")


def test_image_caps_from_the_file_reach_the_config(tmp_path):
    cfg = _load(tmp_path, "[images]\nmax_pixels = 12_000_000\nmax_file_bytes = 8_000_000\n")
    assert cfg.images == ImageLimits(max_pixels=12_000_000, max_file_bytes=8_000_000)
    assert Config().images == ImageLimits(max_pixels=40_000_000, max_file_bytes=30_000_000)
    with pytest.raises(ConfigError, match="images.max_pixels"):
        ImageLimits(max_pixels=0)  # built in code: the same rule


def test_a_key_with_a_newline_is_named_escaped_on_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, '[lock]\n"pin\\nunlock = true" = 3\n')
    text = str(info.value)
    assert "\n" not in text and "lock.pin\\nunlock = true: unknown key" in text


def test_a_long_bad_value_is_shortened_to_keep_one_readable_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, f'[lock]\npin = "{"x" * 5000}"\n')
    assert len(str(info.value)) < 250 and str(info.value).endswith("...")


def test_arrays_nested_thousands_deep_are_a_syntax_error_not_a_crash(tmp_path):
    with pytest.raises(ConfigError, match="TOML syntax error: nested too deeply"):
        _load(tmp_path, "[lock]\npin = " + "[" * 5000 + "]" * 5000 + "\n")


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "door.toml")
    result: list = []
    t = threading.Thread(target=lambda: result.append(
        pytest.raises(ConfigError, Config.load, tmp_path / "door.toml")))
    t.start()
    t.join(5)
    assert not t.is_alive() and "not a regular file" in str(result[0].value)


def test_a_huge_config_file_is_refused_unread(tmp_path):
    path = tmp_path / "door.toml"
    path.write_bytes(b"# " + b"x" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match="a config file is at most"):
        Config.load(path)


def test_a_config_path_with_control_characters_is_shown_escaped(tmp_path):
    with pytest.raises(ConfigError) as info:
        Config.load(tmp_path / "door\n\x1b[31m.toml")
    assert str(info.value).isprintable() and "door\\n\\x1b[31m.toml: config file not found" in str(info.value)


def test_a_string_with_a_delete_character_survives_to_toml_and_back(tmp_path):
    """Found by the property test: TOML forbids a raw DEL, so to_toml must escape it."""
    cfg = Config.from_dict({"camera": {"type": "replay", "path": "frames\x7f"}})
    path = tmp_path / "door.toml"
    path.write_text(cfg.to_toml(), encoding="utf-8")
    assert Config.load(path) == cfg
