"""Writing a calibrated threshold into the door's TOML config: atomically, keeping the old value.

The config is the user's file, with their comments: only the ``[match]`` keys
being set are touched. The previous line is kept, commented out, right above
the new one with the date, so undoing a calibration is deleting two
characters. The new text must load as a valid config with exactly the new
values before anything is written; then it replaces the file in one rename
(:mod:`facegate.edge.atomic`), so a kill or a power cut leaves the old file
or the new one, never half of either. Mode and owner are kept.
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import atomic_path
from ..errors import ConfigError

__all__ = ["MatchUpdate", "write_match"]

_HEADER = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")


@dataclass(frozen=True)
class MatchUpdate:
    path: Path
    previous_threshold: float | None  # None: the bundle's default was in use
    previous_margin: float | None
    threshold: float
    margin: float | None


def _key_line(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(name)}\s*=")


def set_match_keys(text: str, values: dict[str, float], note: str) -> str:
    """``text`` with each ``[match]`` key of ``values`` set; the old line kept as a comment."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if (m := _HEADER.match(ln)) and m.group(1) == "match"), None)
    if start is None:
        block = ["", "[match]"] if lines and lines[-1].strip() else ["[match]"]
        block += [f"# {note}"] + [f"{k} = {v!r}" for k, v in values.items()]
        return "\n".join(lines + block) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    section = lines[start + 1:end]
    for key, value in values.items():
        new = f"{key} = {value!r}"
        at = next((i for i, ln in enumerate(section) if _key_line(key).match(ln)), None)
        if at is None:
            section.insert(0, new)
            section.insert(0, f"# {note}: {key} was not set")
        else:
            old = section[at].strip()
            section[at:at + 1] = [f"# {note}: was {old}", new]
    return "\n".join(lines[:start + 1] + section + lines[end:]) + "\n"


def write_match(path: str | Path, threshold: float, margin: float | None = None, *,
                now: datetime | None = None) -> MatchUpdate:
    """Set ``[match] threshold`` (and ``margin``) in the config at ``path``; returns the old values.

    Refuses (ConfigError, nothing written) when the file is not a valid
    config now, or would not be one afterwards with exactly these values.
    """
    from ..config import Config

    path = Path(path)
    old_cfg = Config.load(path) if path.exists() else Config.default()
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    values = {"threshold": float(threshold)}
    if margin is not None:
        values["margin"] = float(margin)
    new_text = set_match_keys(text, values, f"facegate calibrate {stamp}")
    try:
        new_cfg = Config.from_dict(tomllib.loads(new_text))
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        raise ConfigError(f"{path}: cannot set the calibrated values ({exc}); set [match] threshold = "
                          f"{threshold!r} by hand") from None
    if new_cfg.match.threshold != values["threshold"] or (margin is not None and new_cfg.match.margin != margin):
        raise ConfigError(f"{path}: the file sets [match] in a form this command does not edit; set "
                          f"[match] threshold = {threshold!r} by hand")
    with atomic_path(path) as tmp:
        tmp.write_text(new_text, encoding="utf-8")
        if path.exists():  # the door's config is often root:facegate 0640: keep that
            st = path.stat()
            os.chmod(tmp, st.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(tmp, st.st_uid, st.st_gid)
    return MatchUpdate(path, old_cfg.match.threshold, old_cfg.match.margin, float(threshold), margin)
