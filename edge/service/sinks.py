"""Where the door's decisions and lock states go besides the audit log: event sinks.

A sink only queues (it is called from the door's loop and, for lock states,
with the lock held); a failing sink is logged and never stops the door. The
MQTT sink is built here when ``[mqtt] enabled = true``; tests and other
integrations pass their own to :class:`~facegate.edge.service.DoorDaemon`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..types import Decision

if TYPE_CHECKING:
    from .daemon import DoorDaemon

__all__ = ["EventSink", "build_sinks"]

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def decision(self, decision: Decision, crop: np.ndarray | None = None) -> None:
        """An audited decision, and the face crop it was made on (None without a face).

        The crop is personal data: a sink must neither keep nor send it unless
        ``[storage] save_face_images`` is on (and, for MQTT, ``publish_face_crops``).
        """

    def lock_state(self, state: str) -> None:
        """``locked``, ``unlocked`` or ``jammed``, as the lock drives (or fails to drive) its output."""

    def close(self) -> None: ...


def build_sinks(daemon: DoorDaemon) -> list[EventSink]:
    """The sinks the daemon's config asks for (none by default)."""
    cfg = daemon.config
    if not cfg.mqtt.enabled:
        return []
    from ..mqtt.door import MqttDoor
    from ..mqtt.snapshot import load_public_key
    from ..mqtt.sync import GallerySync

    sync = None
    if cfg.mqtt.gallery_sync:
        gallery = cfg.storage.gallery
        sync = GallerySync(
            public_key=load_public_key(cfg.mqtt.gallery_public_key),
            model_id=daemon.pipeline.model_id,
            state_path=None if gallery == ":memory:" else Path(gallery).with_name(Path(gallery).name + ".sync.json"),
            importer=daemon.gallery_importer(),
            on_applied=lambda header: daemon.gallery.reload())
    door = MqttDoor(cfg.mqtt, model_id=daemon.pipeline.model_id,
                    unlock=lambda: daemon.unlock_remotely("mqtt", cfg.mqtt.username),
                    lock=daemon.lock.lock, gallery_sync=sync,
                    crops_allowed=cfg.storage.save_face_images)
    return [door.start()]
