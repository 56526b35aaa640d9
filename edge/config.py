"""The daemon's configuration: one TOML file read into frozen dataclasses.

Why this shape:

* Every field has a default, so an empty file (or no ``[section]``) is a
  working configuration and the example file documents, not defines.
* One generic converter (:func:`_convert`) reads each field's type hint
  (bool, int, float, str, Optional, ``int | str``, tuple, Literal, nested
  dataclass) and the bounds declared in the field's metadata, so a new
  setting is one line and is checked like every other one.
* Unknown keys are refused: a typo such as ``unlock_secs`` must fail loudly
  rather than leave the door on a default.
* Every error is a :class:`~facegate.edge.errors.ConfigError` whose message
  names the key path, the bad value and what was expected, plus the file and
  line when loading from a file. Checks that span several fields live in
  :func:`check_config`, in one place.

Stdlib only (``tomllib``), so the device needs no pydantic.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .align import QualityThresholds as _Q
from .errors import ConfigError

__all__ = [
    "CameraConfig",
    "Config",
    "DaemonConfig",
    "DetectorConfig",
    "EmbedderConfig",
    "LockConfig",
    "MatchConfig",
    "PolicySection",
    "QualityConfig",
    "StorageConfig",
    "check_config",
]

#: BCM GPIO numbers available on the Raspberry Pi 40-pin header.
GPIO_MIN, GPIO_MAX = 0, 27


def _opt(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
         lt: float | None = None, nonempty: bool = False) -> Any:
    """A dataclass field with bounds in its metadata, read by :func:`_convert`."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if nonempty:
        meta["nonempty"] = True
    return field(default=default, metadata=meta)


# --- sections ---------------------------------------------------------------
@dataclass(frozen=True)
class CameraConfig:
    """Which frame source to open; see :func:`facegate.edge.camera.create_source`."""

    type: Literal["picamera2", "opencv", "replay"] = "opencv"
    #: OpenCV device index ("0" or 0), device path, file or RTSP/HTTP URL.
    device: int | str = "0"
    width: int = _opt(640, ge=16, le=8192)
    height: int = _opt(480, ge=16, le=8192)
    fps: float | None = _opt(None, gt=0, le=240)
    #: Folder of images or a video file, for type = "replay".
    path: str | None = _opt(None, nonempty=True)
    loop: bool = False


@dataclass(frozen=True)
class DetectorConfig:
    min_face_size: int = _opt(60, ge=8, le=4096)
    threads: int = _opt(1, ge=1, le=64)


@dataclass(frozen=True)
class EmbedderConfig:
    #: An embedder key ("facenet", "dlib", ...) or a model bundle directory.
    name: str = _opt("facenet", nonempty=True)
    threads: int = _opt(1, ge=1, le=64)


@dataclass(frozen=True)
class MatchConfig:
    #: Euclidean distance between L2-normalised embeddings (0..2);
    #: None uses the threshold the model bundle ships with.
    threshold: float | None = _opt(None, gt=0, le=2)


@dataclass(frozen=True)
class QualityConfig:
    """The quality gate; defaults are :class:`facegate.edge.align.QualityThresholds`'.

    They pass 87% of LFW-half faces on yaw and 96% on pitch (LFW is in the
    wild; a door camera faces people) and reject clear blur and darkness.
    Field calibration refines them.
    """

    min_face_px: float = _opt(_Q.min_face_px, ge=0, le=4096)
    #: Variance of the Laplacian on the central part of the aligned grey crop.
    min_sharpness: float = _opt(_Q.min_sharpness, ge=0)
    min_brightness: float = _opt(_Q.min_brightness, ge=0, le=255)
    max_brightness: float = _opt(_Q.max_brightness, ge=0, le=255)
    max_yaw: float = _opt(_Q.max_yaw, gt=0, le=1)
    max_pitch: float = _opt(_Q.max_pitch, gt=0, le=1)


@dataclass(frozen=True)
class PolicySection:
    """The ``[policy]`` table; the daemon converts it to ``policy.PolicyConfig``.

    Kept separate so that the policy module stays free of file-format
    concerns and this module free of policy logic.
    """

    k: int = _opt(2, ge=1, le=100)  # grant after k matching frames ...
    n: int = _opt(3, ge=1, le=100)  # ... among the last n
    window_seconds: float = _opt(2.0, gt=0, le=60)
    cooldown_seconds: float = _opt(5.0, ge=0, le=3600)
    max_denied: int = _opt(5, ge=1, le=1000)  # denials within lockout_window -> lockout
    lockout_window_seconds: float = _opt(60.0, gt=0, le=86400)
    lockout_seconds: float = _opt(60.0, ge=0, le=86400)  # 0 = never lock out
    attempt_seconds: float = _opt(10.0, gt=0, le=3600)  # a long visit counts as one attempt per slice
    min_interval_seconds: float = _opt(0.0, ge=0, le=60)  # rate limit between judged frames


@dataclass(frozen=True)
class LockConfig:
    #: "gpio" drives a relay through gpiozero; "log" only logs (bench/demo).
    type: Literal["gpio", "log"] = "gpio"
    pin: int = _opt(17, ge=GPIO_MIN, le=GPIO_MAX)  # BCM numbering
    active_high: bool = True
    unlock_seconds: float = _opt(3.0, gt=0, le=60)
    door_contact_pin: int | None = _opt(None, ge=GPIO_MIN, le=GPIO_MAX)


@dataclass(frozen=True)
class StorageConfig:
    gallery: str = _opt("/var/lib/facegate/gallery.db", nonempty=True)
    audit_retention_days: int = _opt(90, ge=1, le=36500)
    #: Keeping face crops of every attempt is personal data: off by default.
    save_face_images: bool = False


@dataclass(frozen=True)
class DaemonConfig:
    #: Send WATCHDOG=1 to systemd (the unit sets WatchdogSec=).
    watchdog: bool = True
    status_interval_seconds: float = _opt(5.0, gt=0, le=3600)


@dataclass(frozen=True)
class Config:
    """The whole file. Build it with :meth:`load`, :meth:`from_dict` or :meth:`default`."""

    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    policy: PolicySection = field(default_factory=PolicySection)
    lock: LockConfig = field(default_factory=LockConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)

    @classmethod
    def default(cls) -> Config:
        return cls()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build and check a config from plain data (as ``tomllib`` returns it)."""
        cfg = _convert(data, cls, "")
        check_config(cfg)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a TOML file; errors carry ``file:line:`` and the key path."""
        p = Path(path)
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{p}: is a directory, not a config file") from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read config file: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise ConfigError(f"{p}:{line}: not valid UTF-8") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
            where = f"{p}:{m.group(1)}" if m else f"{p}"
            raise ConfigError(f"{where}: TOML syntax error: {exc}") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            key = getattr(exc, "key", None)
            line = find_key_line(text, key) if key else None
            where = f"{p}:{line}" if line else f"{p}"
            err = ConfigError(f"{where}: {exc}")
            err.__dict__.update(exc.__dict__)
            err.file, err.line = str(p), line
            raise err from None

    def to_dict(self) -> dict[str, Any]:
        """Plain TOML-ready data; None values are left out (TOML has no null)."""
        return _to_plain(self)

    def to_toml(self) -> str:
        """The config as TOML text that :meth:`load` reads back to an equal config."""
        out: list[str] = []
        for section, values in self.to_dict().items():
            out.append(f"[{section}]")
            out.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
            out.append("")
        return "\n".join(out)


# --- cross-field checks -------------------------------------------------------
def check_config(cfg: Config) -> None:
    """Every rule that involves more than one field, in one place."""
    if cfg.policy.k > cfg.policy.n:
        _fail("policy.k", cfg.policy.k, f"at most policy.n ({cfg.policy.n})")
    if cfg.quality.min_brightness >= cfg.quality.max_brightness:
        _fail("quality.min_brightness", cfg.quality.min_brightness,
              f"less than quality.max_brightness ({cfg.quality.max_brightness:g})")
    if cfg.camera.type == "replay" and cfg.camera.path is None:
        _fail("camera.path", None, 'a folder or video file when camera.type = "replay"')
    if cfg.lock.door_contact_pin is not None and cfg.lock.door_contact_pin == cfg.lock.pin:
        _fail("lock.door_contact_pin", cfg.lock.door_contact_pin, f"a pin other than lock.pin ({cfg.lock.pin})")


# --- the generic converter ---------------------------------------------------
def _fail(key: str, value: Any, expected: str, *, got: bool = True) -> None:
    msg = f"{key}: expected {expected}, got {_show(value)}" if got else f"{key}: {expected}"
    err = ConfigError(msg)
    err.key, err.value, err.expected = key, value, expected
    raise err


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


_NONE = type(None)


def _describe(tp: Any) -> str:
    """A human name for a type hint, used in 'expected ...' messages."""
    origin = get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not _NONE)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return getattr(tp, "__name__", str(tp))


def _bounds_text(meta: dict[str, Any]) -> str:
    parts = []
    if "ge" in meta and "le" in meta:
        return f" in {meta['ge']}..{meta['le']}"
    for k, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if k in meta:
            parts.append(f"{word} {meta[k]}")
    return (" " + " and ".join(parts)) if parts else ""


def _convert(value: Any, tp: Any, key: str, meta: dict[str, Any] | None = None) -> Any:
    """Check ``value`` against type hint ``tp`` (and bounds in ``meta``); return it converted."""
    meta = meta or {}
    origin = get_origin(tp)

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(key or "<top>", value, "a table")
        hints = get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        for name in value:
            if name not in fields:
                path = f"{key}.{name}" if key else str(name)
                close = difflib.get_close_matches(str(name), fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                _fail(path, value[name], f"unknown key (set to {_show(value[name])}){hint}; "
                      f"expected one of: {', '.join(fields)}", got=False)
        kwargs = {}
        for name, f in fields.items():
            if name in value:
                path = f"{key}.{name}" if key else name
                kwargs[name] = _convert(value[name], hints[name], path, dict(f.metadata))
        return tp(**kwargs)

    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if _NONE in args:
                return None
            _fail(key, value, _describe(tp))
        # Try the members whose kind fits; when one fits but is out of
        # bounds, its own (more precise) message is the one to show.
        first_error: ConfigError | None = None
        for arg in (a for a in args if a is not _NONE and _kind_fits(value, a)):
            try:
                return _convert(value, arg, key, meta)
            except ConfigError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        _fail(key, value, _describe(tp))

    if origin is Literal:
        if value in get_args(tp) and type(value) in {type(a) for a in get_args(tp)}:
            return value
        _fail(key, value, _describe(tp))

    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            _fail(key, value, _describe(tp))
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", meta) for i, v in enumerate(value))
        if len(value) != len(args):
            _fail(key, value, _describe(tp))
        return tuple(_convert(v, a, f"{key}[{i}]", meta) for i, (v, a) in enumerate(zip(value, args)))

    if tp is bool:
        if not isinstance(value, bool):
            _fail(key, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, "an integer" + _bounds_text(meta))
        _check_bounds(value, key, "an integer", meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            _fail(key, value, "a finite number" + _bounds_text(meta))
        _check_bounds(value, key, "a number", meta)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(key, value, "a string")
        if meta.get("nonempty") and not value.strip():
            _fail(key, value, "a non-empty string")
        return value
    raise TypeError(f"config field {key} has an unsupported type hint {tp!r}")


def _kind_fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` is of the broad kind ``tp`` asks for (bounds aside)."""
    origin = get_origin(tp)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    return True  # Literal and anything else: let _convert decide


def _check_bounds(value: float, key: str, kind: str, meta: dict[str, Any]) -> None:
    ok = (
        ("ge" not in meta or value >= meta["ge"])
        and ("gt" not in meta or value > meta["gt"])
        and ("le" not in meta or value <= meta["le"])
        and ("lt" not in meta or value < meta["lt"])
    )
    if not ok:
        _fail(key, value, kind + _bounds_text(meta))


# --- TOML helpers -----------------------------------------------------------
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\s\"'-]+?)\s*\]\s*(#.*)?$")


def find_key_line(text: str, key: str) -> int | None:
    """1-based line where ``key`` (a dotted path) is set, found by a cheap scan.

    Handles the usual ``[section]`` + ``name = value`` layout; falls back to
    the section header, then to any line assigning the last key part.
    """
    parts = [p for p in re.split(r"\.", re.sub(r"\[\d+\]$", "", key)) if p]
    if not parts:
        return None
    table, name = parts[:-1], parts[-1]
    assign = re.compile(rf"^\s*[\"']?{re.escape(name)}[\"']?\s*=")
    lines = text.splitlines()
    current: list[str] = []
    header_line = None
    for no, line in enumerate(lines, 1):
        m = _HEADER.match(line)
        if m and not line.lstrip().startswith("[["):
            current = [s.strip().strip("\"'") for s in m.group(1).split(".")]
            if current == parts:  # the key is itself a table
                return no
            if current == table:
                header_line = no
            continue
        if current == table and assign.match(line):
            return no
        if not current and table and re.match(rf"^\s*{re.escape('.'.join(parts))}\s*=", line):
            return no  # dotted key at top level: camera.width = 640
    if header_line is not None:
        return header_line
    for no, line in enumerate(lines, 1):
        if assign.match(line):
            return no
    return None


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
