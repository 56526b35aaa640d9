"""The [mqtt] section, its secrets, and the daemon's event-sink hook: no broker needed."""

from __future__ import annotations

from dataclasses import replace

import pytest
from facegate.edge.align import NO_QUALITY_GATE
from facegate.edge.audit import AuditLog
from facegate.edge.config import Config
from facegate.edge.errors import ConfigError
from facegate.edge.lock import LogLock
from facegate.edge.mqtt.config import MqttConfig, demo_mqtt, read_password
from facegate.edge.pipeline import FacePipeline
from facegate.edge.service import DoorDaemon, NullNotifier
from facegate.edge.types import Embedding

from ..unit.test_daemon_loop import frame
from .test_mqtt_door import fake_stage_config


def test_mqtt_is_off_unless_enabled_and_every_key_is_checked() -> None:
    assert not Config.default().mqtt.enabled
    with pytest.raises(ConfigError, match=r"mqtt.port: expected an integer in 1..65535, got 70000"):
        Config.from_dict({"mqtt": {"port": 70000}})
    with pytest.raises(ConfigError, match="did you mean 'base_topic'"):
        Config.from_dict({"mqtt": {"base_topc": "x"}})
    with pytest.raises(ConfigError, match="mqtt.gallery_topic: expected a topic outside base_topic"):
        Config.from_dict({"mqtt": {"base_topic": "home/door", "gallery_topic": "home/door/gallery"}})
    with pytest.raises(ConfigError, match="save_face_images"):
        Config.from_dict({"mqtt": {"publish_face_crops": True}})
    assert Config.from_dict({"mqtt": {"publish_face_crops": True},
                             "storage": {"save_face_images": True}}).mqtt.publish_face_crops


def test_the_password_comes_from_the_credential_first_then_a_private_file(tmp_path) -> None:
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    f.chmod(0o600)
    cfg = MqttConfig(username="door", password_file=str(f))
    assert read_password(cfg, credentials_dir="") == "from-file"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-systemd")
    assert read_password(cfg, credentials_dir=str(creds)) == "from-systemd"
    f.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 644\); chmod 600"):
        read_password(cfg, credentials_dir="")
    f.chmod(0o600)
    f.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_password(cfg, credentials_dir="")
    with pytest.raises(ConfigError, match="cannot read"):
        read_password(MqttConfig(password_file=str(tmp_path / "missing")), credentials_dir="")
    assert read_password(MqttConfig(), credentials_dir="") is None


def test_demo_broker_address() -> None:
    cfg = demo_mqtt("broker.local:1884")
    assert (cfg.enabled, cfg.host, cfg.port, cfg.base_topic) == (True, "broker.local", 1884, "facegate/demo")
    for bad in ("broker.local", ":1883", "host:port", "host:99999"):
        with pytest.raises(ConfigError):
            demo_mqtt(bad)


class BrokenSink:
    def __init__(self) -> None:
        self.states: list[str] = []

    def decision(self, decision, crop=None) -> None:
        raise RuntimeError("sink bug")

    def lock_state(self, state: str) -> None:
        self.states.append(state)
        raise RuntimeError("listener bug")

    def close(self) -> None:
        pass


def test_a_failing_sink_never_stops_the_door(tmp_path, tmp_gallery, fake_detector, fake_embedder, file_camera):
    tmp_gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    base = fake_stage_config(Config.default())
    cfg = replace(base, lock=replace(base.lock, type="log", unlock_seconds=0.2),
                  storage=replace(base.storage, gallery=str(tmp_path / "g.db")),
                  daemon=replace(base.daemon, watchdog=False))
    lock, sink = LogLock(unlock_seconds=0.2), BrokenSink()
    with AuditLog(cfg.storage.gallery) as audit, DoorDaemon(
            cfg, source=file_camera([frame(w) for w in (None, 1, 1, 1, 1, None)]), lock=lock, gallery=tmp_gallery,
            audit=audit, pipeline=FacePipeline(fake_detector, fake_embedder, cfg.quality), notifier=NullNotifier(),
            sinks=[sink]) as daemon:
        stats = daemon.run()
        events = audit.recent()
    lock.close()
    assert stats.grants == 1 and [e.outcome for e in events] == ["grant"]  # decided and audited all the same
    assert sink.states[:2] == ["unlocked", "locked"] and lock.is_locked


def test_sighup_keeps_the_running_mqtt_settings_and_takes_the_rest(tmp_path, tmp_gallery, fake_detector,
                                                                  fake_embedder, file_camera, caplog):
    running = MqttConfig(enabled=True, host="broker.lan", base_topic="facegate/front")
    base = Config.default()
    cfg = replace(base, lock=replace(base.lock, type="log"), storage=replace(base.storage, gallery=":memory:"),
                  daemon=replace(base.daemon, watchdog=False), quality=NO_QUALITY_GATE, mqtt=running)
    conf = tmp_path / "facegate.toml"
    conf.write_text('[policy]\nk = 1\nn = 1\n[mqtt]\nenabled = true\nhost = "elsewhere.lan"\n')
    lock = LogLock()
    with DoorDaemon(cfg, config_path=conf, source=file_camera([frame(None)]), lock=lock, gallery=tmp_gallery,
                    audit=AuditLog(":memory:"), pipeline=FacePipeline(fake_detector, fake_embedder, cfg.quality),
                    notifier=NullNotifier(), sinks=[]) as daemon:
        daemon.reload()
        assert daemon.config.policy.k == 1 and daemon.config.mqtt == running
    lock.close()
    assert "[mqtt] changes need a restart" in caplog.text
