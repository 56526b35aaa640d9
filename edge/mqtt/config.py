"""The ``[mqtt]`` section: where the broker is, what the door tells it, what it may accept.

Stdlib only, so :mod:`facegate.edge.config` can read the section on a door
without paho installed; the client itself needs ``pip install 'facegate[mqtt]'``.
Everything is off by default: with no ``[mqtt]`` table the door never opens a
socket. Remote unlock is a second, separate switch, and it is refused unless
the connection is TLS with a username (the broker's ACL then decides who may
write the command topic).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..settings import check_fields, fail, setting

__all__ = ["MqttConfig", "check_mqtt", "demo_mqtt", "read_password"]

#: One MQTT topic level made of characters every broker and Home Assistant accept in ids.
_LEVEL = re.compile(r"^[A-Za-z0-9_-]+$")
_ID = r"[A-Za-z0-9_-]+"
_TOPIC = r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*"
_TOPIC_TEXT = ("topic levels of letters, digits, '_' or '-' separated by '/' "
               "(no wildcards, no empty level, no leading or trailing '/')")
#: systemd credential read before ``password_file`` (``LoadCredential=mqtt-password:...``).
PASSWORD_CREDENTIAL = "mqtt-password"


def _check_topic(key: str, value: str) -> None:
    levels = value.split("/")
    if not all(_LEVEL.match(level) for level in levels):
        fail(key, value, "topic levels of letters, digits, '_' or '-' separated by '/' "
             "(no wildcards, no empty level, no leading or trailing '/')")


@dataclass(frozen=True)
class MqttConfig:
    """What the door publishes to a broker, and the two things it may accept from it."""

    enabled: bool = False
    host: str = setting("localhost", nonempty=True)
    port: int = setting(1883, ge=1, le=65535)
    #: TLS to the broker (port 8883 by convention); ``ca_file`` None trusts the system's CAs.
    tls: bool = False
    ca_file: str | None = setting(None, nonempty=True)
    username: str | None = setting(None, nonempty=True)
    #: A file holding only the password, mode 0600 (0640 for the service's group);
    #: the systemd credential ``mqtt-password`` wins when the unit passes one.
    password_file: str | None = setting(None, nonempty=True)
    #: None: "facegate-<hostname>". Two doors must not share one.
    client_id: str | None = setting(None, nonempty=True, pattern=_ID, pattern_text="letters, digits, '_' or '-'")
    #: Every topic of this door starts here; give each door its own.
    base_topic: str = setting("facegate/door", nonempty=True, pattern=_TOPIC, pattern_text=_TOPIC_TEXT)
    #: Home Assistant's discovery prefix; ``discovery = false`` publishes no config.
    discovery: bool = True
    discovery_prefix: str = setting("homeassistant", nonempty=True, pattern=_TOPIC, pattern_text=_TOPIC_TEXT)
    #: The device's name in Home Assistant.
    device_name: str = setting("Face door", nonempty=True)
    keepalive_seconds: int = setting(30, ge=5, le=3600)
    #: Events wait here while the broker is away; the oldest are dropped (and counted) past it.
    queue_size: int = setting(1000, ge=1, le=100_000)
    #: A Frigate / Double Take style JSON event per decision on ``<base_topic>/events``.
    frigate_events: bool = False
    #: The "camera" field of those events.
    camera_name: str = setting("facegate", nonempty=True)
    #: Publish the aligned face crop of each published decision as JPEG on
    #: ``<base_topic>/snapshot``; needs ``[storage] save_face_images = true`` as
    #: well. Personal data: off by default.
    publish_face_crops: bool = False
    #: Accept UNLOCK on ``<base_topic>/lock/set``: anyone the broker lets write
    #: that topic can open the door. Needs ``tls`` and ``username``.
    remote_unlock: bool = False
    remote_unlock_max: int = setting(3, ge=1, le=100)
    remote_unlock_window_seconds: float = setting(60.0, gt=0, le=86400)
    #: Take signed gallery snapshots from ``gallery_topic`` (several doors, one household).
    gallery_sync: bool = False
    gallery_topic: str = setting("facegate/household/gallery", nonempty=True, pattern=_TOPIC, pattern_text=_TOPIC_TEXT)
    #: Ed25519 public key (PEM file) whose signature a snapshot must carry.
    gallery_public_key: str | None = setting(None, nonempty=True)
    #: The household's backup passphrase (0600 file); the systemd credential
    #: ``gallery-passphrase`` wins when the unit passes one.
    gallery_passphrase_file: str | None = setting(None, nonempty=True)

    def __post_init__(self) -> None:
        check_fields(self, "mqtt")
        for key in ("base_topic", "discovery_prefix", "gallery_topic"):
            _check_topic(f"mqtt.{key}", getattr(self, key))
        if self.client_id is not None and not _LEVEL.match(self.client_id):
            fail("mqtt.client_id", self.client_id, "letters, digits, '_' or '-'")
        if self.remote_unlock and not self.tls:
            fail("mqtt.remote_unlock", True, "remote unlock only over TLS: set mqtt.tls = true first", got=False)
        if self.remote_unlock and self.username is None:
            fail("mqtt.remote_unlock", True,
                 "remote unlock only with a username (and the broker's ACL on the command topic): set mqtt.username",
                 got=False)
        if self.gallery_sync and self.gallery_public_key is None:
            fail("mqtt.gallery_public_key", None, "the publisher's Ed25519 public key (PEM) when gallery_sync = true")
        if self.base_topic == self.gallery_topic or self.gallery_topic.startswith(self.base_topic + "/"):
            fail("mqtt.gallery_topic", self.gallery_topic, "a topic outside base_topic (it is shared by every door)")

    @property
    def effective_client_id(self) -> str:
        if self.client_id is not None:
            return self.client_id
        host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "door"
        return f"facegate-{host}"

    @property
    def node_id(self) -> str:
        """This door's id in Home Assistant's discovery topics and unique ids."""
        slug = self.base_topic.replace("/", "_").replace("-", "_")
        return slug if slug.startswith("facegate") else f"facegate_{slug}"


def check_mqtt(cfg) -> None:
    """The rules that involve other sections (called from ``check_config``)."""
    m: MqttConfig = cfg.mqtt
    if m.publish_face_crops and not cfg.storage.save_face_images:
        fail("mqtt.publish_face_crops", True,
             "face crops are published only when storage.save_face_images = true as well", got=False)


def read_password(cfg: MqttConfig, credentials_dir: str | None = None) -> str | None:
    """The broker password: the systemd credential first, then ``password_file``.

    A password file that others can read is refused (one clear error), as
    ssh refuses a readable private key: it would leak the key to the door.
    """
    cred_dir = credentials_dir if credentials_dir is not None else os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        cred = Path(cred_dir) / PASSWORD_CREDENTIAL
        if cred.is_file():
            return _first_line(cred)
    if cfg.password_file is None:
        return None
    path = Path(cfg.password_file)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"mqtt.password_file: cannot read {path}: {exc.strerror or exc}") from None
    if mode & 0o007:
        raise ConfigError(f"mqtt.password_file: {path} is readable by others (mode {mode & 0o777:o}); "
                          f"chmod 600 {path}")
    return _first_line(path)


def _first_line(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mqtt password: cannot read {path}: {exc}") from None
    line = text.splitlines()[0] if text.strip() else ""
    if not line:
        raise ConfigError(f"mqtt password: {path} is empty")
    return line


def demo_mqtt(address: str) -> MqttConfig:
    """``facegate demo --mqtt HOST:PORT``: the demo door on a broker, Frigate-style events included."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--mqtt: expected HOST:PORT, got {address!r}")
    return MqttConfig(enabled=True, host=host.strip("[]"), port=int(port), base_topic="facegate/demo",
                      device_name="facegate demo", client_id="facegate-demo", frigate_events=True)
