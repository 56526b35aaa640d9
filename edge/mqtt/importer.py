"""The seam between gallery sync and the gallery's encrypted export/import.

:func:`gallery_importer` returns the function :class:`~.sync.GallerySync`
calls to swap a door's gallery for a verified snapshot blob, all or nothing.
The blob is the encrypted export of ``facegate gallery export`` (templates
protected at rest); this module only binds that import to the door's open
gallery. Where this build has no such import, it returns None and every
snapshot is refused with that reason: the door never takes a gallery it
cannot check.
"""

from __future__ import annotations

import logging

from .sync import Importer

__all__ = ["gallery_importer"]

log = logging.getLogger(__name__)


def gallery_importer(config, gallery) -> Importer | None:
    """The import of the encrypted gallery export bound to ``gallery``, or None where there is none."""
    log.warning("gallery sync: this build has no encrypted gallery import; snapshots will be refused")
    return None
