"""A door that follows the household's gallery: verify, then swap atomically, never go back.

The publisher keeps one signed snapshot retained on the household topic, so a
door that was off gets it when it reconnects. Each door checks the signature
against the public key in its config, the model_id against its own model and
the version against the last one it applied (kept in a small state file next
to the gallery), then hands the blob to :data:`Importer`: the one function
that swaps the gallery, all or nothing. A refused snapshot changes nothing
and is logged with its reason.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_json
from ..errors import FacegateError, SnapshotRefused
from .snapshot import SnapshotHeader, open_snapshot

__all__ = ["GallerySync", "Importer", "SyncResult"]

log = logging.getLogger(__name__)

#: Replace the door's gallery with the snapshot's blob in one step (all or nothing),
#: or raise a FacegateError and leave it as it was. Called off the door's loop.
Importer = Callable[[bytes, SnapshotHeader], None]


@dataclass(frozen=True)
class SyncResult:
    applied: bool
    reason: str
    version: int | None = None


class GallerySync:
    """Applies the newest valid snapshot; one at a time, on the caller's thread."""

    def __init__(self, *, public_key, model_id: str | None, state_path: str | Path | None,
                 importer: Importer | None, on_applied: Callable[[SnapshotHeader], None] | None = None) -> None:
        self.public_key = public_key
        self.model_id = model_id
        self.state_path = Path(state_path) if state_path is not None else None
        self.importer = importer
        self.on_applied = on_applied
        self._mutex = threading.Lock()
        self._version = self._read_version()

    @property
    def version(self) -> int | None:
        """The version of the snapshot now in the gallery (None: none applied)."""
        return self._version

    def _read_version(self) -> int | None:
        if self.state_path is None or not self.state_path.exists():
            return None
        try:
            return int(json.loads(self.state_path.read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # a damaged state file: apply nothing older than what may be there
            log.error("gallery sync: cannot read %s (%s); only snapshots newer than now are accepted",
                      self.state_path, exc)
            return int(time.time() * 1000)

    def receive(self, payload: bytes) -> SyncResult:
        if not payload:
            return SyncResult(False, "empty message (snapshot withdrawn); gallery kept")
        with self._mutex:
            try:
                header, blob = open_snapshot(payload, public_key=self.public_key, model_id=self.model_id)
                if self._version is not None and header.version <= self._version:
                    if header.version == self._version:
                        return SyncResult(False, "already applied", header.version)
                    raise SnapshotRefused(f"snapshot version {header.version} is older than the applied "
                                          f"{self._version}")
                if self.importer is None:
                    raise SnapshotRefused("this door has no gallery importer (needs the encrypted gallery "
                                          "export: facegate gallery export/import)")
                self.importer(blob, header)
            except SnapshotRefused as exc:
                log.warning("gallery snapshot refused: %s", exc)
                return SyncResult(False, str(exc))
            except FacegateError as exc:
                log.error("gallery snapshot not applied, gallery unchanged: %s", exc)
                return SyncResult(False, f"import failed: {exc}")
            self._version = header.version
            if self.state_path is not None:
                atomic_write_json(self.state_path, {"version": header.version, "sha256": header.sha256,
                                                    "model_id": header.model_id, "applied": time.time()})
            log.info("gallery snapshot %d applied (%d bytes, model %s)", header.version, header.size,
                     header.model_id)
        if self.on_applied is not None:
            self.on_applied(header)
        return SyncResult(True, "applied", header.version)
