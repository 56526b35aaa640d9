"""Home Assistant MQTT discovery payloads: the door appears with no YAML.

One device (identifiers, name, manufacturer, model = the face model's id,
sw_version = facegate's version) carries four entities:

* ``lock``: state ``LOCKED`` / ``UNLOCKED`` / ``JAMMED`` following the relay;
  its ``command_topic`` is required by Home Assistant and refused by the door
  unless remote unlock is turned on.
* ``event``: one event per audited decision (grant, deny, unknown_face,
  lockout, spoof_rejected, remote_unlock); the payload's other keys (person,
  distance, threshold, model_id, ...) become the event's attributes.
* ``sensor``: the last person let in, with the time as an attribute.
* ``sensor`` (diagnostic): events dropped while the broker was away.

Every entity uses the door's availability topic (the last will says
``offline``). Discovery configs and states are retained; commands never are.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

from .config import MqttConfig
from .topics import JAMMED, LOCKED, OFFLINE, ONLINE, UNLOCKED, Topics

__all__ = ["EVENT_TYPES", "discovery_messages", "facegate_version"]

#: The ``event_type`` values of the event entity, in the order Home Assistant lists them.
EVENT_TYPES = ("grant", "deny", "unknown_face", "lockout", "spoof_rejected", "remote_unlock")


def facegate_version() -> str:
    try:
        return version("facegate")
    except PackageNotFoundError:  # a source checkout without an install
        return "0+unknown"


def _device(cfg: MqttConfig, model_id: str | None) -> dict:
    # "model" is the face model the door runs: what decides who gets in, and what
    # a gallery snapshot must match (the device block's schema has no better key).
    return {
        "identifiers": [cfg.node_id],
        "name": cfg.device_name,
        "manufacturer": "facegate",
        "model": model_id or "facegate face door",
        "sw_version": facegate_version(),
    }


def discovery_messages(cfg: MqttConfig, model_id: str | None) -> dict[str, dict]:
    """Config topic -> payload for every entity of this door (publish retained)."""
    t = Topics.of(cfg)
    common = {
        "availability_topic": t.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": _device(cfg, model_id),
        "origin": {"name": "facegate", "sw_version": facegate_version()},
    }
    node = cfg.node_id
    return {
        t.config("lock", "lock"): {
            **common,
            "name": "Lock",
            "unique_id": f"{node}_lock",
            "state_topic": t.lock_state,
            "command_topic": t.lock_command,
            "payload_lock": "LOCK",
            "payload_unlock": "UNLOCK",
            "state_locked": LOCKED,
            "state_unlocked": UNLOCKED,
            "state_jammed": JAMMED,
            "optimistic": False,
            "retain": False,
            "qos": 1,
        },
        t.config("event", "decision"): {
            **common,
            "name": "Face decision",
            "unique_id": f"{node}_decision",
            "state_topic": t.decision,
            "event_types": list(EVENT_TYPES),
            "icon": "mdi:face-recognition",
            "qos": 1,
        },
        t.config("sensor", "last_person"): {
            **common,
            "name": "Last person let in",
            "unique_id": f"{node}_last_person",
            "state_topic": t.last_person,
            "value_template": "{{ value_json.name }}",
            "json_attributes_topic": t.last_person,
            "icon": "mdi:account-check",
            "qos": 1,
        },
        t.config("sensor", "dropped_events"): {
            **common,
            "name": "MQTT events dropped",
            "unique_id": f"{node}_dropped_events",
            "state_topic": t.stats,
            "value_template": "{{ value_json.dropped }}",
            "json_attributes_topic": t.stats,
            "entity_category": "diagnostic",
            "state_class": "total_increasing",
            "qos": 1,
        },
    }


def encode(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
