"""Where the CLI finds the door's config and gallery when it is not told.

The daemon reads ``/etc/facegate/facegate.toml`` (the unit's ``--config``) and
its ``[storage] gallery``. The CLI looks in the same places, so that
``facegate enroll`` on the Pi writes where the door reads:

1. ``--config FILE``;
2. ``$FACEGATE_CONFIG``;
3. ``/etc/facegate/facegate.toml`` when it exists: when this user cannot read
   it, a command that needs the gallery stops and says so (run it with sudo
   or give ``--gallery``) instead of silently using another gallery;
4. no config: the built-in defaults, and the gallery ``$FACEGATE_GALLERY``,
   else ``$XDG_DATA_HOME/facegate/gallery.db`` (``~/.local/share/...``): a
   desk, not a door.

``--gallery`` always wins over the config's gallery. Stdlib only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CONFIG_ENV", "GALLERY_ENV", "SYSTEM_CONFIG", "ConfigChoice", "choose_config", "daemon_config",
           "user_gallery"]

CONFIG_ENV = "FACEGATE_CONFIG"
GALLERY_ENV = "FACEGATE_GALLERY"
#: The config the systemd unit starts the daemon with.
SYSTEM_CONFIG = Path("/etc/facegate/facegate.toml")


@dataclass(frozen=True)
class ConfigChoice:
    """The config a command uses and why (``origin``: "--config", "$FACEGATE_CONFIG", "system" or "none")."""

    path: Path | None
    origin: str
    #: The system config exists but this user cannot read it (path is then None).
    unreadable: Path | None = None

    def describe(self) -> str:
        if self.path is None:
            if self.unreadable is not None:
                return f"{self.unreadable} (not readable by this user)"
            return "no config file (built-in defaults)"
        how = {"--config": "given with --config", "$FACEGATE_CONFIG": f"from ${CONFIG_ENV}",
               "system": "the system config"}[self.origin]
        return f"{self.path} ({how})"


def _readable(path: Path) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def choose_config(explicit: Path | str | None, env: Mapping[str, str] | None = None) -> ConfigChoice:
    """The config a gallery or model command uses: ``--config``, ``$FACEGATE_CONFIG``, the system one, or none."""
    env = os.environ if env is None else env
    if explicit is not None:
        return ConfigChoice(Path(explicit), "--config")
    if env.get(CONFIG_ENV):
        return ConfigChoice(Path(env[CONFIG_ENV]), "$FACEGATE_CONFIG")
    system = SYSTEM_CONFIG
    if system.exists():
        if _readable(system):
            return ConfigChoice(system, "system")
        return ConfigChoice(None, "system", unreadable=system)
    return ConfigChoice(None, "none")


def daemon_config(explicit: Path | str | None, env: Mapping[str, str] | None = None) -> Path:
    """The config ``facegate run`` reads: ``--config``, ``$FACEGATE_CONFIG``, else the system path (must exist)."""
    env = os.environ if env is None else env
    if explicit is not None:
        return Path(explicit)
    return Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else SYSTEM_CONFIG


def user_gallery(env: Mapping[str, str] | None = None) -> Path:
    """The gallery without any config: ``$FACEGATE_GALLERY``, else under ``$XDG_DATA_HOME``."""
    env = os.environ if env is None else env
    if env.get(GALLERY_ENV):
        return Path(env[GALLERY_ENV])
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "facegate" / "gallery.db"
