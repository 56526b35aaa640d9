"""The door on MQTT: Home Assistant discovery, events, remote unlock, household gallery sync.

Only :mod:`.config` is imported by the rest of the edge (stdlib only); the
client modules import paho-mqtt (``pip install 'facegate[mqtt]'``) and are
loaded only when ``[mqtt] enabled = true``.
"""

from .config import MqttConfig

__all__ = ["MqttConfig"]
