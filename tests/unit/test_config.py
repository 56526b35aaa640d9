"""Config: defaults, the shipped example, and errors that name their key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from facegate.edge.config import (
    CameraConfig,
    Config,
    LockConfig,
    PolicyConfig,
    QualityThresholds,
)
from facegate.edge.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "facegate.toml"


def _load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "facegate.toml"
    path.write_text(text)
    return Config.load(path)


# --- defaults and round trips ---------------------------------------------------
def test_defaults() -> None:
    cfg = Config.default()
    assert cfg == Config() == Config.from_dict({})
    assert cfg.camera == CameraConfig(type="opencv", device="0", width=640, height=480, fps=None, path=None,
                                      loop=False)
    assert cfg.lock == LockConfig(type="gpio", pin=17, active_high=True, unlock_seconds=3.0, door_contact_pin=None)
    assert (cfg.policy.k, cfg.policy.n, cfg.policy.max_denied) == (2, 3, 15)
    assert cfg.match.threshold is None
    assert cfg.embedder.name == "facegate-irn"  # our own INT8 network (the shipped default bundle)
    assert cfg.storage.gallery == "/var/lib/facegate/gallery.db"
    assert cfg.storage.save_face_images is False
    assert cfg.daemon.watchdog is True


def test_every_field_has_a_default() -> None:
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory()):  # type: ignore[misc]
            assert f.default is not dataclasses.MISSING, f"{section.name}.{f.name}"


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().lock.pin = 4  # type: ignore[misc]


def test_empty_file_is_the_default(tmp_path: Path) -> None:
    assert _load_text(tmp_path, "# nothing set\n") == Config.default()


def test_example_file_loads_and_matches_its_text() -> None:
    cfg = Config.load(EXAMPLE)
    raw = tomllib.loads(EXAMPLE.read_text())
    for section, values in raw.items():
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"
    assert cfg.camera.type == "picamera2"
    assert set(raw) == {f.name for f in dataclasses.fields(Config)}  # the example shows every section


def test_to_toml_round_trip(tmp_path: Path) -> None:
    cfg = Config.from_dict({
        "camera": {"type": "replay", "path": "/tmp/frames \"quoted\"", "fps": 12.5, "loop": True, "device": 2},
        "match": {"threshold": 0.93},
        "lock": {"type": "log", "door_contact_pin": 27, "active_high": False},
        "quality": {"min_sharpness": 1e-5},
    })
    assert _load_text(tmp_path, cfg.to_toml()) == cfg
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert Config.load(EXAMPLE).to_toml() and _load_text(tmp_path, Config.load(EXAMPLE).to_toml()) == Config.load(EXAMPLE)


def test_values_are_converted() -> None:
    cfg = Config.from_dict({"camera": {"fps": 15, "device": 1}, "quality": {"min_brightness": 50}})
    assert cfg.camera.fps == 15.0 and isinstance(cfg.camera.fps, float)
    assert cfg.camera.device == 1
    assert isinstance(cfg.quality.min_brightness, float)
    assert Config.from_dict({"camera": {"device": "rtsp://cam.local/stream"}}).camera.device.startswith("rtsp")


# --- errors name their key -----------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"lock": {"pin": 99}}, "lock.pin", "0..27"),
        ({"lock": {"pin": "17"}}, "lock.pin", "an integer"),
        ({"lock": {"pinn": 17}}, "lock.pinn", "did you mean 'pin'"),
        ({"locks": {}}, "locks", "unknown key"),
        ({"lock": 5}, "lock", "a table"),
        ({"camera": {"type": "usb"}}, "camera.type", "'picamera2', 'opencv', 'replay'"),
        ({"camera": {"fps": 0}}, "camera.fps", "> 0"),
        ({"camera": {"fps": float("nan")}}, "camera.fps", "finite"),
        ({"camera": {"width": True}}, "camera.width", "an integer"),
        ({"camera": {"device": 1.5}}, "camera.device", "an integer or a string"),
        ({"daemon": {"watchdog": "yes"}}, "daemon.watchdog", "true or false"),
        ({"embedder": {"name": " "}}, "embedder.name", "non-empty"),
        ({"match": {"threshold": 3.0}}, "match.threshold", "<= 2"),
        ({"storage": {"audit_retention_days": 0}}, "storage.audit_retention_days", "1..36500"),
        # cross-field rules
        ({"policy": {"k": 4, "n": 3}}, "policy.k", "at most policy.n"),
        ({"quality": {"min_brightness": 200, "max_brightness": 100}}, "quality.min_brightness", "less than"),
        ({"camera": {"type": "replay"}}, "camera.path", "replay"),
        ({"lock": {"pin": 17, "door_contact_pin": 17}}, "lock.door_contact_pin", "other than lock.pin"),
    ],
)
def test_errors_name_key_value_and_expectation(data: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    msg = str(info.value)
    assert msg.startswith(f"{key}:"), msg
    assert fragment in msg, msg
    assert info.value.key == key
    assert isinstance(info.value, ValueError)


def test_error_shows_bad_value() -> None:
    with pytest.raises(ConfigError, match=r"lock\.pin: expected an integer in 0\.\.27, got 99"):
        Config.from_dict({"lock": {"pin": 99}})
    with pytest.raises(ConfigError, match=r"set to 3"):
        Config.from_dict({"lock": {"pinn": 3}})


def test_load_error_has_file_and_line(tmp_path: Path) -> None:
    text = "[camera]\nwidth = 640\n\n[lock]\n# relay\npin = 40\n"
    with pytest.raises(ConfigError) as info:
        _load_text(tmp_path, text)
    assert str(info.value).startswith(f"{tmp_path / 'facegate.toml'}:6: lock.pin: ")
    assert "40" in str(info.value)
    assert info.value.line == 6


def test_load_line_for_unknown_key_and_cross_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"facegate\.toml:3: policy\.kk: unknown key"):
        _load_text(tmp_path, "[policy]\nk = 2\nkk = 3\n")
    with pytest.raises(ConfigError, match=r"facegate\.toml:2: policy\.k: expected at most policy\.n"):
        _load_text(tmp_path, "[policy]\nk = 5\nn = 3\n")
    # a key left unset (camera.path) points at its section
    with pytest.raises(ConfigError, match=r"facegate\.toml:2: camera\.path"):
        _load_text(tmp_path, "\n[camera]\ntype = \"replay\"\n")


def test_syntax_error_has_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load_text(tmp_path, "[camera]\nwidth = 640\nheight = \n")
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'facegate.toml'}:3: TOML syntax error"), msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Config.load(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="directory"):
        Config.load(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "facegate.toml"
    path.write_bytes(b"[lock]\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"facegate\.toml:2: not valid UTF-8"):
        Config.load(path)


def test_policy_and_quality_tables_parse_into_the_stages_own_dataclasses() -> None:
    """[policy] is policy.PolicyConfig and [quality] align.QualityThresholds: one type, one set of defaults."""
    from facegate.edge.align import QualityThresholds as GateThresholds
    from facegate.edge.policy import PolicyConfig as PolicyOwn

    cfg = Config.from_dict({"policy": {"k": 3, "n": 4}, "quality": {"min_sharpness": 30}})
    assert type(cfg.policy) is PolicyOwn and (cfg.policy.k, cfg.policy.n) == (3, 4)
    assert type(cfg.quality) is GateThresholds and cfg.quality.min_sharpness == 30.0
    assert Config().policy == PolicyOwn() and Config().quality == GateThresholds()


def test_the_stages_dataclasses_check_their_own_bounds_from_code_too() -> None:
    with pytest.raises(ConfigError, match=r"policy\.k: expected at most policy\.n"):
        PolicyConfig(k=4, n=3)
    with pytest.raises(ConfigError, match=r"quality\.min_brightness"):
        QualityThresholds(min_brightness=200, max_brightness=100)
    with pytest.raises(ConfigError, match=r"policy\.window_seconds"):
        PolicyConfig(window_seconds=0)
