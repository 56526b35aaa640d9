"""Remote unlock over a real mosquitto: off by default, TLS and a username only, rate limited, audited."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from facegate.edge.align import NO_QUALITY_GATE
from facegate.edge.audit import AuditLog
from facegate.edge.camera import ReplaySource
from facegate.edge.config import Config
from facegate.edge.errors import ConfigError
from facegate.edge.lock import GpioLock
from facegate.edge.mqtt.config import MqttConfig
from facegate.edge.mqtt.link import Incoming
from facegate.edge.mqtt.remote import RemoteCommands
from facegate.edge.pipeline import FacePipeline
from facegate.edge.service import DoorDaemon, NullNotifier

from .mqtt_broker import Broker, Watcher, publish

PIN = 17
HA = ("ha", "ha-password")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("mosquitto-tls"), tls=True, users={"door": "door-password", HA[0]: HA[1]})
    b.start()
    yield b
    b.stop()


@pytest.fixture()
def base(request):
    return f"facegate/remote_{abs(hash(request.node.name)) % 10**8}"


@pytest.fixture()
def password_file(tmp_path):
    p = tmp_path / "mqtt-password"
    p.write_text("door-password\n")
    p.chmod(0o600)
    return p


def tls_cfg(broker, base, password_file, **kw) -> MqttConfig:
    return MqttConfig(enabled=True, host="127.0.0.1", port=broker.tls_port, tls=True, ca_file=str(broker.ca),
                      username="door", password_file=str(password_file), base_topic=base,
                      client_id=f"door-{base.split('_')[-1]}", keepalive_seconds=5, **kw)


class Door:
    """A real daemon (fake camera stages: the loop is not needed here) whose MQTT sink comes from its config."""

    def __init__(self, tmp_path, mqtt: MqttConfig, mock_factory) -> None:
        base = Config.default()
        self.cfg = replace(base, lock=replace(base.lock, unlock_seconds=0.2),
                           storage=replace(base.storage, gallery=str(tmp_path / "g.db")),
                           daemon=replace(base.daemon, watchdog=False), quality=NO_QUALITY_GATE, mqtt=mqtt)
        from tests.conftest import FakeDetector, FakeEmbedder

        self.pins = mock_factory
        self.lock = GpioLock(PIN, unlock_seconds=0.2, pin_factory=mock_factory)
        self.audit = AuditLog(self.cfg.storage.gallery)
        self.daemon = DoorDaemon(self.cfg, source=ReplaySource([np.zeros((8, 8, 3), np.uint8)]), lock=self.lock,
                                 audit=self.audit, notifier=NullNotifier(),
                                 pipeline=FacePipeline(FakeDetector(), FakeEmbedder(), NO_QUALITY_GATE))
        assert self.daemon.sinks[0].link.wait_connected(5), "the door did not connect"

    def pulses(self) -> int:
        states = [s.state for s in self.pins.pin(PIN).states]
        return sum(1 for a, b in zip(states, states[1:]) if not a and b)

    def close(self) -> None:
        self.daemon.close()
        self.lock.close()
        self.audit.close()


def command(broker, base, payload: str, *, retain: bool = False) -> None:
    publish(broker.tls_port, f"{base}/lock/set", payload, retain=retain, tls_ca=broker.ca, auth=HA)


def test_an_unlock_over_tls_pulses_the_lock_and_is_audited_with_source_mqtt(broker, base, password_file, tmp_path,
                                                                             mock_factory):
    door = Door(tmp_path, tls_cfg(broker, base, password_file, remote_unlock=True), mock_factory)
    watcher = Watcher(broker.port, (f"{base}/#",), client_id="w-ok").start()
    try:
        command(broker, base, "UNLOCK")
        result = watcher.wait_for(f"{base}/lock/result").json()
        assert result["accepted"], result
        time.sleep(0.4)  # the pulse and its relock
        assert [s.state for s in mock_factory.pin(PIN).states] == [False, True, False]
        row = door.audit.recent(1)[0]
        assert row.outcome == "grant" and row.extra["source"] == "mqtt" and row.extra["user"] == "door"
        event = watcher.wait_for(f"{base}/decision").json()
        assert event["event_type"] == "remote_unlock" and event["source"] == "mqtt"
        states = [m.payload for m in watcher.on(f"{base}/lock")]
        assert b"UNLOCKED" in states and states[-1] == b"LOCKED"
    finally:
        watcher.stop()
        door.close()


def test_remote_unlocks_are_rate_limited(broker, base, password_file, tmp_path, mock_factory):
    door = Door(tmp_path, tls_cfg(broker, base, password_file, remote_unlock=True, remote_unlock_max=2),
                mock_factory)
    watcher = Watcher(broker.port, (f"{base}/lock/result",), client_id="w-rate").start()
    try:
        for _ in range(3):
            command(broker, base, "UNLOCK")
        results = [m.json() for m in watcher.wait_count(f"{base}/lock/result", 3)]
        assert [r["accepted"] for r in results] == [True, True, False]
        assert "rate limited" in results[2]["reason"]
        time.sleep(0.3)
        assert 1 <= door.pulses() <= 2 and [e.extra.get("source") for e in door.audit.recent()] == ["mqtt", "mqtt"]
    finally:
        watcher.stop()
        door.close()


def test_a_retained_unlock_is_refused_so_it_cannot_replay_at_every_reconnect(broker, base, password_file, tmp_path,
                                                                             mock_factory):
    command(broker, base, "UNLOCK", retain=True)  # waiting on the broker before the door connects
    watcher = Watcher(broker.port, (f"{base}/lock/result",), client_id="w-retained").start()
    door = Door(tmp_path, tls_cfg(broker, base, password_file, remote_unlock=True), mock_factory)
    try:
        result = watcher.wait_for(f"{base}/lock/result").json()
        assert not result["accepted"] and "retained" in result["reason"]
        assert door.pulses() == 0 and door.audit.recent() == []
    finally:
        command(broker, base, "", retain=True)  # clear it
        watcher.stop()
        door.close()


def test_remote_unlock_is_refused_when_it_is_off(broker, base, tmp_path, mock_factory):
    plain = MqttConfig(enabled=True, host="127.0.0.1", port=broker.port, base_topic=base, client_id="door-off",
                       keepalive_seconds=5)
    door = Door(tmp_path, plain, mock_factory)
    watcher = Watcher(broker.port, (f"{base}/lock/result",), client_id="w-off").start()
    try:
        publish(broker.port, f"{base}/lock/set", "UNLOCK")
        publish(broker.port, f"{base}/lock/set", "LOCK")  # always safe
        publish(broker.port, f"{base}/lock/set", "OPEN SESAME")
        results = [m.json() for m in watcher.wait_count(f"{base}/lock/result", 3)]
        assert [(r["command"], r["accepted"]) for r in results] == [
            ("UNLOCK", False), ("LOCK", True), ("OPEN SESAME", False)]
        assert "off" in results[0]["reason"]
        assert door.pulses() == 0 and door.audit.recent() == []
    finally:
        watcher.stop()
        door.close()


def test_remote_unlock_cannot_be_configured_without_tls_or_a_username() -> None:
    with pytest.raises(ConfigError, match="mqtt.remote_unlock: remote unlock only over TLS"):
        Config.from_dict({"mqtt": {"enabled": True, "remote_unlock": True, "username": "door"}})
    with pytest.raises(ConfigError, match="remote unlock only with a username"):
        Config.from_dict({"mqtt": {"enabled": True, "remote_unlock": True, "tls": True}})
    assert not Config.default().mqtt.remote_unlock  # off unless asked for


@pytest.mark.parametrize("secure, retain, expected", [
    (False, False, "needs a TLS connection with a username"),
    (True, True, "retained commands are refused"),
    (True, False, None),
])
def test_the_command_judge_checks_the_connection_on_every_command(secure, retain, expected) -> None:
    opened: list[int] = []
    judge = RemoteCommands(enabled=True, max_unlocks=3, window_seconds=60, unlock=lambda: opened.append(1),
                           lock=lambda: None)
    verdict = judge.handle(Incoming("door/lock/set", b"UNLOCK", retain, secure))
    if expected is None:
        assert verdict.accepted and opened == [1]
    else:
        assert not verdict.accepted and expected in verdict.reason and opened == []


def test_the_rate_limit_window_slides() -> None:
    now = [0.0]
    judge = RemoteCommands(enabled=True, max_unlocks=2, window_seconds=10, unlock=lambda: None, lock=lambda: None,
                           clock=lambda: now[0])
    msg = Incoming("t", b"UNLOCK", False, True)
    assert [judge.handle(msg).accepted for _ in range(3)] == [True, True, False]
    now[0] = 10.0
    assert judge.handle(msg).accepted


def test_even_with_the_config_check_bypassed_a_plain_connection_cannot_unlock(broker, base):
    from facegate.edge.mqtt.door import MqttDoor

    opened: list[int] = []
    plain = MqttConfig(enabled=True, host="127.0.0.1", port=broker.port, base_topic=base, client_id="door-plain",
                       keepalive_seconds=5)
    door = MqttDoor(plain, model_id="m", unlock=lambda: opened.append(1), lock=lambda: None).start()
    door.commands.enabled = True  # as if remote_unlock had been switched on without TLS
    watcher = Watcher(broker.port, (f"{base}/lock/result",), client_id="w-plain").start()
    try:
        assert door.link.wait_connected(5)
        publish(broker.port, f"{base}/lock/set", "UNLOCK")
        result = watcher.wait_for(f"{base}/lock/result").json()
        assert not result["accepted"] and "TLS connection with a username" in result["reason"]
        assert opened == []
    finally:
        watcher.stop()
        door.close()
