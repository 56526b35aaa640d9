"""What the installed facegate.service starts with: its --config and its template-key credential."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from ..gallery.keys import CREDENTIAL_NAME

__all__ = ["UNIT_PATHS", "InstalledUnit", "read_unit"]

#: Where an admin (first) or a package installs the unit.
UNIT_PATHS: tuple[Path, ...] = (Path("/etc/systemd/system/facegate.service"),
                                Path("/usr/lib/systemd/system/facegate.service"),
                                Path("/lib/systemd/system/facegate.service"))


@dataclass(frozen=True)
class InstalledUnit:
    path: Path
    #: ExecStart's --config (None: not given there).
    config: Path | None
    #: LoadCredential[Encrypted]=facegate-gallery-key:SOURCE (None: no such line).
    key_source: Path | None
    key_encrypted: bool = False


def read_unit(paths: tuple[Path, ...] | None = None) -> InstalledUnit | None:
    """The first installed unit with its drop-ins (``facegate.service.d/*.conf``) laid over it."""
    for path in UNIT_PATHS if paths is None else paths:
        if not path.is_file():
            continue
        files = [path, *sorted(path.with_name(path.name + ".d").glob("*.conf"))]
        config: Path | None = None
        source: Path | None = None
        encrypted = False
        for f in files:
            try:
                text = f.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for raw in text.replace("\\\n", " ").splitlines():
                line = raw.strip()
                key, sep, value = line.partition("=")
                if not sep or line.startswith(("#", ";")):
                    continue
                key, value = key.strip(), value.strip()
                if key == "ExecStart" and value:
                    words = shlex.split(value.lstrip("-@:+!"))
                    for i, w in enumerate(words):
                        if w == "--config" and i + 1 < len(words):
                            config = Path(words[i + 1])
                        elif w.startswith("--config="):
                            config = Path(w.split("=", 1)[1])
                elif key in ("LoadCredential", "LoadCredentialEncrypted"):
                    cred, _, src = value.partition(":")
                    if cred == CREDENTIAL_NAME:
                        source = Path(src) if src else Path("/etc/credstore") / cred
                        encrypted = key == "LoadCredentialEncrypted"
        return InstalledUnit(path, config, source, encrypted)
    return None
