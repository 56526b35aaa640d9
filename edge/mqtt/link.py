"""The door's connection to the broker: never in the door's way.

paho-mqtt runs its network loop (connect, reconnect with backoff, keepalive)
on its own thread, and a sender thread hands it messages only while it is
connected. The daemon only ever appends to a bounded queue (a lock and a
deque: microseconds), so a broker that is down, slow or refusing cannot
delay a decision, the lock or the watchdog. While the broker is away, events
wait in the queue; past ``queue_size`` the oldest are dropped and counted.
States (the lock, availability, discovery) are kept as "latest value per
topic" instead, and all of them are sent again on every (re)connect, so
Home Assistant never shows a stale state after an outage.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BackendUnavailable, ConfigError
from .config import MqttConfig

__all__ = ["Incoming", "LinkStats", "Message", "MqttLink"]

log = logging.getLogger(__name__)

#: Messages handed to paho but not yet acknowledged, at most (the rest wait in our queue).
MAX_INFLIGHT = 20


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1


@dataclass(frozen=True)
class Incoming:
    """A message the door received, with what a handler must check."""

    topic: str
    payload: bytes
    retain: bool
    #: The door's own connection is TLS and authenticated with a username.
    secure: bool


@dataclass(frozen=True)
class LinkStats:
    connected: bool
    queued: int
    dropped: int
    sent: int
    connects: int


def _paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise BackendUnavailable("paho-mqtt is not installed: pip install 'facegate[mqtt]'") from exc
    return mqtt


class MqttLink:
    """One client connection with a last will, a bounded outbox and topic handlers.

    :param will: published by the broker when the door vanishes (retained ``offline``).
    :param on_connect: called on paho's thread after each (re)connect, before
        the queue is drained; returns nothing (use :meth:`set_state`).
    :param handlers: topic filter -> function called on paho's thread with an
        :class:`Incoming`; it must be quick (hand long work to a thread).
    """

    def __init__(self, cfg: MqttConfig, *, password: str | None = None, will: Message | None = None,
                 on_connect: Callable[[], None] | None = None,
                 handlers: dict[str, Callable[[Incoming], None]] | None = None) -> None:
        self._mqtt = mqtt = _paho()
        self.cfg = cfg
        self.secure = bool(cfg.tls and cfg.username)
        self._on_connect_hook = on_connect
        self._handlers = dict(handlers or {})
        self._mutex = threading.Lock()
        self._events: deque[Message] = deque()
        self._states: dict[str, Message] = {}
        self._dirty: set[str] = set()
        self._dropped = self._sent = self._connects = 0
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # the broker acknowledged our topic filters
        self._closed = False
        self._started = False
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.effective_client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            try:
                client.tls_set(ca_certs=cfg.ca_file, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"mqtt.ca_file: cannot use {cfg.ca_file}: {exc}") from None
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.connect_timeout = 3.0
        client.on_connect = self._paho_connected
        client.on_disconnect = self._paho_disconnected
        client.on_message = self._paho_message
        client.on_subscribe = lambda *args: self._subscribed.set()
        self._client = client
        self._sender = threading.Thread(target=self._send_loop, name="facegate-mqtt-send", daemon=True)

    # -- what the door calls (never blocks) ------------------------------------------
    def publish(self, msg: Message) -> None:
        """Queue an event; past ``queue_size`` the oldest queued event is dropped."""
        dropped = 0
        with self._mutex:
            if self._closed:
                return
            if len(self._events) >= self.cfg.queue_size:
                self._events.popleft()
                self._dropped += 1
                dropped = self._dropped
            self._events.append(msg)
        self._wake.set()
        if dropped == 1 or (dropped and dropped % 100 == 0):
            log.warning("mqtt: broker unreachable, %d event(s) dropped so far (queue_size %d)",
                        dropped, self.cfg.queue_size)

    def set_state(self, msg: Message) -> None:
        """Set a retained topic's latest value; only the newest is sent, and again on reconnect."""
        with self._mutex:
            if self._closed:
                return
            self._states[msg.topic] = msg
            self._dirty.add(msg.topic)
        self._wake.set()

    def resend_states(self) -> None:
        """Send every retained state again (Home Assistant restarted and asked)."""
        with self._mutex:
            self._dirty.update(self._states)
        self._wake.set()

    @property
    def stats(self) -> LinkStats:
        with self._mutex:
            return LinkStats(self._connected.is_set(), len(self._events), self._dropped, self._sent, self._connects)

    def wait_connected(self, timeout: float) -> bool:
        """Until connected and subscribed (a command sent after this reaches the door)."""
        deadline = time.monotonic() + timeout
        return self._connected.wait(timeout) and self._subscribed.wait(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, timeout: float) -> bool:
        """Until every queued event and state was handed over and acknowledged (tests, close)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._mutex:
                pending = bool(self._events or self._dirty)
            if not pending and self._connected.is_set() and not self._client.want_write() \
                    and not self._client._out_messages:  # paho has no public "all acknowledged"
                return True
            time.sleep(0.02)
        return False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MqttLink:
        """Connect in the background; returns at once, whether the broker answers or not."""
        if self._started:
            return self
        self._started = True
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_seconds)
        self._client.loop_start()
        self._sender.start()
        log.info("mqtt: connecting to %s:%d as %s (tls=%s)", self.cfg.host, self.cfg.port,
                 self.cfg.effective_client_id, self.cfg.tls)
        return self

    def close(self, final: Message | None = None, timeout: float = 2.0) -> None:
        """Send ``final`` (a graceful ``offline``) if connected, then disconnect; safe twice."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        if self._started:
            if self._connected.is_set():
                self._drain(timeout)
            if final is not None and self._connected.is_set():
                try:
                    info = self._client.publish(final.topic, final.payload, qos=final.qos, retain=final.retain)
                    info.wait_for_publish(timeout)
                except (RuntimeError, ValueError) as exc:  # not sent: the will says offline anyway
                    log.debug("mqtt: final message not sent: %s", exc)
            self._client.disconnect()
            self._client.loop_stop()
            self._sender.join(timeout)

    def _drain(self, timeout: float) -> None:
        """On close: hand over what is still queued, for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._connected.is_set():
            msg = self._next()
            if msg is None:
                break
            self._client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        while time.monotonic() < deadline and self._client._out_messages:  # acknowledged by the broker
            time.sleep(0.02)

    # -- paho's thread -----------------------------------------------------------------------
    def _paho_connected(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.error("mqtt: broker refused the connection: %s", reason_code)
            return
        with self._mutex:
            self._connects += 1
            self._dirty.update(self._states)
        if self._handlers:
            client.subscribe([(topic, 1) for topic in self._handlers])
        else:
            self._subscribed.set()
        if self._on_connect_hook is not None:
            try:
                self._on_connect_hook()
            except Exception:
                log.exception("mqtt: on_connect hook failed")
        self._connected.set()
        self._wake.set()
        log.info("mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)

    def _paho_disconnected(self, client, userdata, flags, reason_code, properties=None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if was and not self._closed:
            log.warning("mqtt: connection lost (%s); the door goes on, events are queued", reason_code)

    def _paho_message(self, client, userdata, msg) -> None:
        for topic_filter, handler in self._handlers.items():
            if _matches(topic_filter, msg.topic):
                try:
                    handler(Incoming(msg.topic, bytes(msg.payload), bool(msg.retain), self.secure))
                except Exception:
                    log.exception("mqtt: handler for %s failed", msg.topic)

    # -- the sender thread ---------------------------------------------------------------------
    def _send_loop(self) -> None:
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            if self._closed:
                return
            while self._connected.is_set() and not self._closed:
                msg = self._next()
                if msg is None:
                    break
                info = self._client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
                # NO_CONN: paho keeps a QoS 1 message and sends it after the reconnect.
                if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
                    self._requeue(msg)
                    break
                with self._mutex:
                    self._sent += 1

    def _next(self) -> Message | None:
        with self._mutex:
            if self._dirty:
                return self._states[self._dirty.pop()]
            if self._events:
                return self._events.popleft()
        return None

    def _requeue(self, msg: Message) -> None:
        with self._mutex:
            if msg.retain and msg.topic in self._states:
                self._dirty.add(msg.topic)
            else:
                self._events.appendleft(msg)


def _matches(topic_filter: str, topic: str) -> bool:
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def publish_once(cfg: MqttConfig, topic: str, payload: bytes, *, retain: bool, timeout: float = 10.0,
                 password: str | None = None) -> None:
    """Connect, publish one QoS 1 message, wait for the broker's acknowledgement, disconnect (the CLI's way)."""
    from ..errors import MqttError
    from .config import read_password

    mqtt = _paho()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{cfg.effective_client_id}-publish",
                         protocol=mqtt.MQTTv311, clean_session=True)
    if cfg.username is not None:
        client.username_pw_set(cfg.username, password if password is not None else read_password(cfg))
    if cfg.tls:
        try:
            client.tls_set(ca_certs=cfg.ca_file, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"mqtt.ca_file: cannot use {cfg.ca_file}: {exc}") from None
    client.connect_timeout = timeout
    refused: list[str] = []
    connected = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(cfg.host, cfg.port, keepalive=max(5, int(timeout)))
    except (OSError, ssl.SSLError) as exc:
        raise MqttError(f"cannot reach the broker at {cfg.host}:{cfg.port}: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise MqttError(f"the broker at {cfg.host}:{cfg.port} did not answer within {timeout:g} s")
        if refused:
            raise MqttError(f"the broker at {cfg.host}:{cfg.port} refused the connection: {refused[0]}")
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise MqttError(f"the broker did not acknowledge the message on {topic} within {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
