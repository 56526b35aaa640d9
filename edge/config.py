"""The daemon's configuration: one TOML file read into frozen dataclasses.

Every field has a default, so an empty file (or no ``[section]``) is a
working configuration and the example file documents, not defines. Unknown
keys are refused: a typo such as ``unlock_secs`` must fail loudly rather than
leave the door on a default. The tables are read by the generic converter of
:mod:`facegate.edge.settings`; ``[policy]`` and ``[quality]`` are the policy's
and the quality gate's own dataclasses (one type, one set of defaults and
bounds per stage). Errors carry the file, the line and the key path. Checks
that span several sections live in :func:`check_config`.

Stdlib only (``tomllib``), so the device needs no pydantic.
"""

from __future__ import annotations

import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .align import MIN_FACE_PX, QualityThresholds
from .embed import DEFAULT_EMBEDDER
from .mqtt.config import MqttConfig, check_mqtt
from .errors import ConfigError
from .image.limits import ImageLimits
from .liveness import LivenessConfig
from .policy import PolicyConfig
from .settings import convert, fail, find_key_line, printable, setting, to_plain, toml_value

__all__ = [
    "CameraConfig",
    "Config",
    "DaemonConfig",
    "DetectorConfig",
    "EmbedderConfig",
    "ImageLimits",
    "LivenessConfig",
    "LockConfig",
    "MatchConfig",
    "MqttConfig",
    "PolicyConfig",
    "QualityThresholds",
    "StorageConfig",
    "check_config",
]

#: BCM GPIO numbers available on the Raspberry Pi 40-pin header.
GPIO_MIN, GPIO_MAX = 0, 27


# --- sections ---------------------------------------------------------------
@dataclass(frozen=True)
class CameraConfig:
    """Which frame source to open; see :func:`facegate.edge.camera.create_source`."""

    type: Literal["picamera2", "opencv", "replay"] = "opencv"
    #: OpenCV device index ("0" or 0), device path, file or RTSP/HTTP URL.
    device: int | str = "0"
    width: int = setting(640, ge=16, le=8192)
    height: int = setting(480, ge=16, le=8192)
    fps: float | None = setting(None, gt=0, le=240)
    #: Folder of images or a video file, for type = "replay".
    path: str | None = setting(None, nonempty=True)
    loop: bool = False
    #: picamera2 only: also stream this small image from the ISP and detect on it
    #: (height defaults to 3/4 of the width); None shrinks the main image instead.
    lores_width: int | None = setting(None, ge=64, le=4096)
    lores_height: int | None = setting(None, ge=48, le=4096)


@dataclass(frozen=True)
class DetectorConfig:
    type: Literal["mtcnn"] = "mtcnn"
    #: Smallest face searched for, in frame pixels; the quality gate's
    #: ``min_face_px`` has the same default, so what is found can be judged.
    min_face_size: int = setting(MIN_FACE_PX, ge=12, le=4096)
    threads: int = setting(1, ge=1, le=64)
    #: The frame is shrunk so the smallest face becomes this many pixels before
    #: detection (faster; crops still come from the full frame).
    work_face_px: int = setting(24, ge=12, le=4096)


@dataclass(frozen=True)
class EmbedderConfig:
    #: A shipped bundle or family name (the default: our own network), "facenet", "dlib", or a bundle folder.
    name: str = setting(DEFAULT_EMBEDDER, nonempty=True)
    threads: int = setting(1, ge=1, le=64)


@dataclass(frozen=True)
class MatchConfig:
    #: Euclidean distance between L2-normalised embeddings (0..2);
    #: None uses the threshold the model bundle ships with.
    threshold: float | None = setting(None, gt=0, le=2)
    #: Identification: the best person must be at least this much nearer than the
    #: runner-up (``facegate calibrate`` sets it with the threshold); None = no margin.
    margin: float | None = setting(None, ge=0, le=2)
    #: Target chance that a stranger's judged face matches anybody of the gallery: the pair
    #: threshold is tightened for identification_fmr / (people enrolled); see operating_threshold.
    identification_fmr: float | None = setting(1e-3, gt=0, le=0.1)
    #: A threshold looser than the model was measured at is refused (at start and on SIGHUP) unless this is true.
    allow_unsafe_threshold: bool = False


@dataclass(frozen=True)
class LockConfig:
    #: "gpio" drives a relay through gpiozero; "log" only logs (bench/demo).
    type: Literal["gpio", "log"] = "gpio"
    pin: int = setting(17, ge=GPIO_MIN, le=GPIO_MAX)  # BCM numbering
    active_high: bool = True
    unlock_seconds: float = setting(3.0, gt=0, le=60)
    door_contact_pin: int | None = setting(None, ge=GPIO_MIN, le=GPIO_MAX)


@dataclass(frozen=True)
class StorageConfig:
    gallery: str = setting("/var/lib/facegate/gallery.db", nonempty=True)
    audit_retention_days: int = setting(90, ge=1, le=36500)
    #: Keeping face crops of every attempt is personal data: off by default.
    save_face_images: bool = False
    #: The template key (a systemd credential "facegate-gallery-key" wins over it);
    #: None: gallery.key beside the gallery, created 0600 at the first enrollment.
    key_file: str | None = setting(None, nonempty=True)
    #: Gallery, audit, key and crop files 0640 (the unit's group may read them) instead of 0600.
    group_readable: bool = False


@dataclass(frozen=True)
class DaemonConfig:
    #: Send WATCHDOG=1 to systemd (the unit sets WatchdogSec=).
    watchdog: bool = True
    status_interval_seconds: float = setting(5.0, gt=0, le=3600)
    #: WATCHDOG=1 is sent only while the newest camera frame is younger than this.
    frame_timeout_seconds: float = setting(5.0, gt=0, le=600)
    #: No frame for this long: exit non-zero (door locked) so systemd restarts the service.
    camera_stall_seconds: float = setting(20.0, gt=0, le=3600)
    #: This many frames in a row failing in a stage (detector, embedder, liveness): exit non-zero.
    max_stage_errors: int = setting(3, ge=1, le=1000)


@dataclass(frozen=True)
class Config:
    """The whole file. Build it with :meth:`load`, :meth:`from_dict` or :meth:`default`."""

    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    lock: LockConfig = field(default_factory=LockConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    #: Caps on every image file read (enroll, verify, identify, replay): see docs/security-input.md.
    images: ImageLimits = field(default_factory=ImageLimits)

    @classmethod
    def default(cls) -> Config:
        return cls()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build and check a config from plain data (as ``tomllib`` returns it)."""
        cfg = convert(data, cls, "")
        check_config(cfg)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a TOML file; errors carry ``file:line:`` and the key path."""
        p = Path(path)
        label = printable(str(p))
        try:
            raw = _read_config_bytes(p)
        except FileNotFoundError:
            raise ConfigError(f"{label}: config file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{label}: is a directory, not a config file") from None
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read config file: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise ConfigError(f"{label}:{line}: not valid UTF-8") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
            where = f"{label}:{m.group(1)}" if m else label
            raise ConfigError(f"{where}: TOML syntax error: {printable(str(exc))}") from None
        except RecursionError:  # thousands of nested arrays
            raise ConfigError(f"{label}: TOML syntax error: nested too deeply") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            key = getattr(exc, "key", None)
            line = find_key_line(text, key) if key else None
            where = f"{label}:{line}" if line else label
            err = ConfigError(f"{where}: {exc}")
            err.__dict__.update(exc.__dict__)
            err.file, err.line = str(p), line
            raise err from None

    def to_dict(self) -> dict[str, Any]:
        """Plain TOML-ready data; None values are left out (TOML has no null)."""
        return to_plain(self)

    def to_toml(self) -> str:
        """The config as TOML text that :meth:`load` reads back to an equal config."""
        out: list[str] = []
        for section, values in self.to_dict().items():
            out.append(f"[{section}]")
            out.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
            out.append("")
        return "\n".join(out)


#: A config file is a page of settings; anything bigger is a mistake (or a device).
MAX_CONFIG_BYTES = 1_000_000


def _read_config_bytes(p: Path) -> bytes:
    """The file's bytes; a FIFO or device is refused rather than read (it could block the start forever)."""
    st = p.stat()
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(p)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"not a regular file (mode {stat.filemode(st.st_mode)})")
    if st.st_size > MAX_CONFIG_BYTES:
        raise OSError(f"{st.st_size} bytes; a config file is at most {MAX_CONFIG_BYTES} bytes")
    return p.read_bytes()


# --- cross-field checks -------------------------------------------------------
def check_config(cfg: Config) -> None:
    """Every rule that involves more than one field, in one place."""
    # Rules within [policy] and [quality] live in their own dataclasses.
    check_mqtt(cfg)  # [mqtt] with [storage]: edge/mqtt/config.py
    if cfg.camera.type == "replay" and cfg.camera.path is None:
        fail("camera.path", None, 'a folder or video file when camera.type = "replay"')
    if cfg.lock.door_contact_pin is not None and cfg.lock.door_contact_pin == cfg.lock.pin:
        fail("lock.door_contact_pin", cfg.lock.door_contact_pin, f"a pin other than lock.pin ({cfg.lock.pin})")
    if cfg.camera.lores_width is not None and cfg.camera.type != "picamera2":
        fail("camera.lores_width", cfg.camera.lores_width, 'no value unless camera.type = "picamera2"')
    if cfg.camera.lores_width is not None and cfg.camera.lores_width > cfg.camera.width:
        fail("camera.lores_width", cfg.camera.lores_width, f"at most camera.width ({cfg.camera.width})")
