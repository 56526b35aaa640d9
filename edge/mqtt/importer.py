"""The seam between gallery sync and the gallery's encrypted backups.

:func:`gallery_importer` returns the function :class:`~.sync.GallerySync`
calls to swap a door's gallery for a verified snapshot: the blob is an
encrypted backup written by ``facegate gallery export`` (AES-GCM under a
passphrase every door of the household knows), read with
:mod:`facegate.edge.gallery.backup`, and the door's people and templates are
replaced by the backup's in ONE write transaction of the door's own gallery
(re-sealed with the door's own template key): a matcher sees the old gallery
or the new one, never half of each. The audit events in the same file are
left alone. Where this build has no backup module the importer is None and
every snapshot is refused with that reason.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from ..errors import ConfigError, SnapshotRefused
from .config import MqttConfig
from .sync import Importer

__all__ = ["PASSPHRASE_CREDENTIAL", "gallery_importer", "read_sync_passphrase", "replace_people"]

log = logging.getLogger(__name__)

#: systemd credential holding the household's backup passphrase (else [mqtt] gallery_passphrase_file).
PASSPHRASE_CREDENTIAL = "gallery-passphrase"


def read_sync_passphrase(cfg: MqttConfig, credentials_dir: str | None = None) -> str:
    from .config import _first_line

    cred_dir = credentials_dir if credentials_dir is not None else os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / PASSPHRASE_CREDENTIAL).is_file():
        return _first_line(Path(cred_dir) / PASSPHRASE_CREDENTIAL)
    if cfg.gallery_passphrase_file is None:
        raise ConfigError("mqtt.gallery_passphrase_file: gallery sync needs the household's backup passphrase "
                          f"(the systemd credential {PASSPHRASE_CREDENTIAL!r}, or a 0600 file named here)")
    path = Path(cfg.gallery_passphrase_file)
    try:
        if path.stat().st_mode & 0o007:
            raise ConfigError(f"mqtt.gallery_passphrase_file: {path} is readable by others; chmod 600 {path}")
    except OSError as exc:
        raise ConfigError(f"mqtt.gallery_passphrase_file: cannot read {path}: {exc.strerror or exc}") from None
    return _first_line(path)


def replace_people(gallery, people) -> int:
    """Make ``people`` the gallery's whole content in one write transaction; returns the templates written.

    :meth:`Gallery.replace_people` applies every check and the template
    encryption that enrollment uses.
    """
    from ..gallery.checks import check_name

    people = list(people)
    if len({check_name(p.name) for p in people}) != len(people):
        raise SnapshotRefused("the snapshot names someone twice")
    # the publishing door already accepted these names; look-alikes were its call
    return gallery.replace_people(people, allow_lookalike=True)


def gallery_importer(config, gallery) -> Importer | None:
    """The backup import bound to the door's open ``gallery``, or None where this build has none."""
    try:
        from ..gallery import backup
    except ImportError:
        log.warning("gallery sync: this build has no encrypted gallery backups; snapshots will be refused")
        return None
    passphrase = read_sync_passphrase(config.mqtt)
    folder = Path(config.storage.gallery).parent if config.storage.gallery != ":memory:" else None

    def importer(blob: bytes, header) -> None:
        fd, name = tempfile.mkstemp(prefix=".gallery-snapshot.", dir=folder)  # 0600, beside the gallery
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            info, people = backup.read_backup(name, passphrase)
        finally:
            Path(name).unlink(missing_ok=True)
        models = info.get("model_ids") or []
        if models and models != [header.model_id]:
            raise SnapshotRefused(f"the snapshot's header says model {header.model_id!r} but its backup holds "
                                  f"{models}")
        written = replace_people(gallery, people)
        log.info("gallery sync: %d people, %d template(s) now in the gallery", len(people), written)

    return importer
