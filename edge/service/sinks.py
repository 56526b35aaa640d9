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

__all__ = ["AuditToSinks", "EventSink", "build_sinks", "crop_to_sinks"]

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def decision(self, decision: Decision) -> None:
        """A decision that was just written to the audit log (grant, refusal, lockout, remote unlock)."""

    def face_crop(self, decision: Decision, crop: np.ndarray) -> None:
        """The face crop that audited ``decision`` was made on.

        Personal data: a sink must neither keep nor send it unless
        ``[storage] save_face_images`` is on (and, for MQTT, ``publish_face_crops``).
        """

    def lock_state(self, state: str) -> None:
        """``locked``, ``unlocked`` or ``jammed``, as the lock drives (or fails to drive) its output."""

    def close(self) -> None: ...


class AuditToSinks:
    """The daemon's audit log, telling the sinks each decision it records.

    Wrapping the log rather than the loop means that whatever path writes an
    audit row (a grant before its unlock, a refusal, a remote unlock) is
    published too, and nothing that was not audited is. Everything else is the
    wrapped log's own.
    """

    def __init__(self, audit, sinks: list[EventSink]) -> None:
        self._audit = audit
        self._sinks = sinks
        #: the decision recorded last (the loop hands its face crop over only for that one)
        self.last: Decision | None = None

    def record(self, event, *args, **kwargs):
        row = self._audit.record(event, *args, **kwargs)
        if isinstance(event, Decision):
            self.last = event
            for sink in self._sinks:
                try:
                    sink.decision(event)
                except Exception:  # a sink never stops the door
                    log.exception("event sink %r failed", sink)
        return row

    def __getattr__(self, name: str):
        return getattr(self._audit, name)


def crop_to_sinks(sinks: list[EventSink], decision: Decision, crop: np.ndarray) -> None:
    for sink in sinks:
        try:
            sink.face_crop(decision, crop)
        except Exception:
            log.exception("event sink %r failed", sink)


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
