"""What a decision looks like on MQTT: Home Assistant's event, the last person, a Frigate-style event.

Pure functions of a :class:`~facegate.edge.types.Decision`, so the payloads
are tested without a broker. A refusal never names anyone: only a grant
carries a person's name (and its reason text). Only audited decisions are published (grant,
deny, lockout, and remote unlocks): one message per attempt, not per frame.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..types import Decision, Outcome

__all__ = ["event_type", "frigate_event", "ha_event", "jpeg", "last_person", "similarity"]


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def similarity(distance: float | None) -> float | None:
    """A 0..1 score from the Euclidean distance of unit vectors (cosine similarity, clipped).

    ``d**2 = 2 - 2 cos``, so ``cos = 1 - d**2 / 2``: 1 for the same face, 0 or
    less for unrelated ones. Frigate and Double Take automations compare a
    "score" or "confidence" in 0..1, never a distance.
    """
    d = _finite(distance)
    if d is None:
        return None
    return round(min(1.0, max(0.0, 1.0 - d * d / 2.0)), 4)


def _is_spoof(decision: Decision) -> bool:
    text = (decision.reason or "").lower()
    return "spoof" in text or "liveness" in text or "liveness" in decision.extra or "spoof" in decision.extra


def event_type(decision: Decision) -> str | None:
    """The Home Assistant ``event_type`` of a decision, or None when it is not published."""
    if decision.extra.get("source") == "mqtt" and decision.outcome == Outcome.GRANT:
        return "remote_unlock"
    if decision.outcome == Outcome.GRANT:
        return "grant"
    if decision.outcome == Outcome.LOCKOUT:
        return "lockout"
    if decision.outcome == Outcome.DENY:
        if _is_spoof(decision):
            return "spoof_rejected"
        d, t = _finite(decision.distance), decision.threshold
        # nobody in the gallery was near enough: a stranger, not a refused resident
        if d is None or t is None or d > t:
            return "unknown_face"
        return "deny"
    return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def ha_event(decision: Decision) -> dict[str, Any] | None:
    """The event entity's payload: ``event_type`` plus attributes."""
    kind = event_type(decision)
    if kind is None:
        return None
    return {
        "event_type": kind,
        "person": decision.name,
        "distance": _finite(decision.distance),
        "threshold": _finite(decision.threshold),
        "model_id": decision.model_id,
        # A refusal's reason may name the nearest enrolled person: that stays in
        # the door's audit log and never goes to the broker.
        "reason": decision.reason if decision.outcome == Outcome.GRANT else None,
        "source": decision.extra.get("source", "camera"),
        "timestamp": _iso(decision.timestamp),
    }


def last_person(decision: Decision) -> dict[str, Any] | None:
    """The retained "last person let in" state, or None when this decision let nobody in."""
    if decision.outcome != Outcome.GRANT:
        return None
    source = decision.extra.get("source", "camera")
    name = decision.name if decision.name is not None else f"remote ({source})"
    return {"name": name, "timestamp": _iso(decision.timestamp), "source": source,
            "distance": _finite(decision.distance), "model_id": decision.model_id}


def frigate_event(decision: Decision, *, camera: str) -> dict[str, Any] | None:
    """A Frigate / Double Take style event: id, camera, name, score, timestamp (plus the door's own fields)."""
    kind = event_type(decision)
    if kind is None:
        return None
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "camera": camera,
        "name": decision.name or "unknown",
        "score": similarity(decision.distance),
        "timestamp": round(decision.timestamp, 3),
        "type": kind,
        "match": decision.outcome == Outcome.GRANT and decision.name is not None,
        "distance": _finite(decision.distance),
        "threshold": _finite(decision.threshold),
        "model_id": decision.model_id,
    }
    return event


def jpeg(crop: np.ndarray) -> bytes | None:
    """The crop as JPEG bytes (what Frigate sends on its snapshot topics)."""
    import cv2

    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return data.tobytes() if ok else None
