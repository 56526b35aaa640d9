"""The topic layout of one door, in one place (documented in docs/home-assistant.md)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import MqttConfig

__all__ = ["Topics", "ONLINE", "OFFLINE", "LOCKED", "UNLOCKED", "JAMMED"]

ONLINE, OFFLINE = "online", "offline"
LOCKED, UNLOCKED, JAMMED = "LOCKED", "UNLOCKED", "JAMMED"


@dataclass(frozen=True)
class Topics:
    base: str
    discovery_prefix: str
    node_id: str
    gallery: str

    @classmethod
    def of(cls, cfg: MqttConfig) -> Topics:
        return cls(cfg.base_topic, cfg.discovery_prefix, cfg.node_id, cfg.gallery_topic)

    @property
    def availability(self) -> str:
        """``online`` / ``offline`` (retained; ``offline`` is also the last will)."""
        return f"{self.base}/availability"

    @property
    def lock_state(self) -> str:
        """``LOCKED`` / ``UNLOCKED`` / ``JAMMED``, retained, following the relay."""
        return f"{self.base}/lock"

    @property
    def lock_command(self) -> str:
        """``UNLOCK`` / ``LOCK`` from Home Assistant; never retained, refused when retained."""
        return f"{self.base}/lock/set"

    @property
    def command_result(self) -> str:
        """Why a command was accepted or refused (JSON, not retained)."""
        return f"{self.base}/lock/result"

    @property
    def decision(self) -> str:
        """Home Assistant event entity: ``{"event_type": ..., attributes}`` per audited decision."""
        return f"{self.base}/decision"

    @property
    def last_person(self) -> str:
        """The last person let in (retained JSON)."""
        return f"{self.base}/last_person"

    @property
    def events(self) -> str:
        """Frigate / Double Take style JSON per decision (optional)."""
        return f"{self.base}/events"

    @property
    def snapshot(self) -> str:
        """The face crop of a published decision, JPEG bytes (only when asked for and saved anyway)."""
        return f"{self.base}/snapshot"

    @property
    def stats(self) -> str:
        """The link's own counters (queued, dropped, sent), retained."""
        return f"{self.base}/mqtt_stats"

    @property
    def gallery_result(self) -> str:
        """What this door made of the last gallery snapshot (JSON, not retained)."""
        return f"{self.base}/gallery/result"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth message: ``online`` means re-send discovery."""
        return f"{self.discovery_prefix}/status"

    def config(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"
