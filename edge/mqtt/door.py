"""One door on MQTT: the daemon's event sink, Home Assistant's device, the household's follower.

Built by :func:`facegate.edge.service.sinks.build_sinks` when ``[mqtt]
enabled = true``. What the daemon calls (:meth:`MqttDoor.decision`,
:meth:`MqttDoor.lock_state`) only queues; everything that talks to the broker
runs on the link's threads, and a snapshot import on a thread of its own.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import numpy as np

from ..types import Decision
from .config import MqttConfig, read_password
from .discovery import discovery_messages, encode
from .events import frigate_event, ha_event, jpeg, last_person
from .link import Incoming, Message, MqttLink
from .remote import RemoteCommands
from .sync import GallerySync
from .topics import JAMMED, LOCKED, OFFLINE, ONLINE, UNLOCKED, Topics

__all__ = ["MqttDoor"]

log = logging.getLogger(__name__)

_LOCK_STATES = {"locked": LOCKED, "unlocked": UNLOCKED, "jammed": JAMMED}


def _json(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class MqttDoor:
    """Publishes the door to a broker and takes the two things it may accept from it.

    :param unlock: the daemon's remote-unlock path (pulse, relock, audit with source "mqtt").
    :param lock: lock now (``LOCK`` from Home Assistant).
    :param gallery_sync: a :class:`GallerySync` when ``gallery_sync = true``.
    :param crops_allowed: image saving is on *and* ``publish_face_crops`` was asked for.
    """

    def __init__(self, cfg: MqttConfig, *, model_id: str | None, unlock: Callable[[], None],
                 lock: Callable[[], None], gallery_sync: GallerySync | None = None,
                 crops_allowed: bool = False, password: str | None = None) -> None:
        self.cfg = cfg
        self.topics = t = Topics.of(cfg)
        self.model_id = model_id
        self.crops_allowed = crops_allowed and cfg.publish_face_crops
        self.gallery_sync = gallery_sync
        self.commands = RemoteCommands(enabled=cfg.remote_unlock, max_unlocks=cfg.remote_unlock_max,
                                       window_seconds=cfg.remote_unlock_window_seconds, unlock=unlock, lock=lock)
        self._lock_state = LOCKED
        handlers: dict[str, Callable[[Incoming], None]] = {t.lock_command: self._on_command}
        if cfg.discovery:
            handlers[t.ha_status] = self._on_ha_status
        if gallery_sync is not None:
            handlers[t.gallery] = self._on_snapshot
        self._sync_threads: list[threading.Thread] = []
        self.link = MqttLink(
            cfg, password=password if password is not None else read_password(cfg),
            will=Message(t.availability, OFFLINE.encode(), retain=True),
            on_connect=self._on_connect, handlers=handlers)

    # -- the daemon's side (never blocks) -------------------------------------------------
    def start(self) -> MqttDoor:
        self.link.start()
        return self

    def decision(self, decision: Decision) -> None:
        """An audited decision: the event entity, the last person, the optional Frigate event."""
        event = ha_event(decision)
        if event is None:
            return
        self.link.publish(Message(self.topics.decision, _json(event)))
        person = last_person(decision)
        if person is not None:
            self.link.set_state(Message(self.topics.last_person, _json(person), retain=True))
        if self.cfg.frigate_events:
            fevent = frigate_event(decision, camera=self.cfg.camera_name)
            if fevent is not None:
                self.link.publish(Message(self.topics.events, _json(fevent)))

    def face_crop(self, decision: Decision, crop: np.ndarray) -> None:
        """The crop of a published decision, as JPEG on ``<base>/snapshot``: only when both switches are on."""
        if not self.crops_allowed or ha_event(decision) is None:
            return
        data = jpeg(crop)
        if data is not None:
            self.link.publish(Message(self.topics.snapshot, data))

    def lock_state(self, state: str) -> None:
        """``locked`` / ``unlocked`` / ``jammed`` from the lock (called with the lock held: only queue)."""
        self._lock_state = _LOCK_STATES.get(state, JAMMED)
        self.link.set_state(Message(self.topics.lock_state, self._lock_state.encode(), retain=True))

    def close(self) -> None:
        """Say ``offline`` on the way out (the will says it when the process dies instead)."""
        self.link.close(final=Message(self.topics.availability, OFFLINE.encode(), retain=True))
        for th in self._sync_threads:
            th.join(5.0)

    # -- the link's side ---------------------------------------------------------------------
    def _on_connect(self) -> None:
        t = self.topics
        self.link.set_state(Message(t.availability, ONLINE.encode(), retain=True))
        self.link.set_state(Message(t.lock_state, self._lock_state.encode(), retain=True))
        stats = self.link.stats
        self.link.set_state(Message(t.stats, _json({"dropped": stats.dropped, "queued": stats.queued,
                                                    "sent": stats.sent, "connects": stats.connects}), retain=True))
        if self.cfg.discovery:
            for topic, payload in discovery_messages(self.cfg, self.model_id).items():
                self.link.set_state(Message(topic, encode(payload), retain=True))

    def _on_ha_status(self, msg: Incoming) -> None:
        if msg.payload.strip() == ONLINE.encode():
            self.link.resend_states()

    def _on_command(self, msg: Incoming) -> None:
        verdict = self.commands.handle(msg)
        self.link.publish(Message(self.topics.command_result, _json(
            {"command": verdict.command, "accepted": verdict.accepted, "reason": verdict.reason})))

    def _on_snapshot(self, msg: Incoming) -> None:
        # An import writes the gallery: not on paho's thread, which must keep the keepalive going.
        th = threading.Thread(target=self._apply_snapshot, args=(msg.payload,), name="facegate-gallery-sync",
                              daemon=True)
        self._sync_threads = [x for x in self._sync_threads if x.is_alive()] + [th]
        th.start()

    def _apply_snapshot(self, payload: bytes) -> None:
        assert self.gallery_sync is not None
        result = self.gallery_sync.receive(payload)
        self.link.publish(Message(self.topics.gallery_result, _json(
            {"applied": result.applied, "reason": result.reason, "version": result.version})))
