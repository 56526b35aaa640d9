"""The door on a real mosquitto: Home Assistant discovery, lock states, decisions, outages, the last will."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from facegate.edge.align import NO_QUALITY_GATE
from facegate.edge.audit import AuditLog
from facegate.edge.config import Config
from facegate.edge.lock import GpioLock, LogLock
from facegate.edge.mqtt.config import MqttConfig
from facegate.edge.mqtt.discovery import EVENT_TYPES
from facegate.edge.mqtt.door import MqttDoor
from facegate.edge.pipeline import FacePipeline
from facegate.edge.service import DoorDaemon, NullNotifier
from facegate.edge.types import Decision, Embedding, Outcome

from ..unit.test_daemon_loop import frame
from .mqtt_broker import Broker, Watcher

BASE = "facegate/front"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture()
def base(request):
    """A topic of its own for each test: retained messages of one test never reach another."""
    return f"{BASE}_{abs(hash(request.node.name)) % 10**8}"


def mqtt_cfg(port: int, base: str, **kw) -> MqttConfig:
    return MqttConfig(enabled=True, host="127.0.0.1", port=port, base_topic=base,
                      client_id=f"door-{base.split('_')[-1]}", keepalive_seconds=5, **kw)


def decision(outcome: str, name: str | None = None, distance: float | None = 0.4, reason: str = "test",
             **kw) -> Decision:
    return Decision(timestamp=time.time(), outcome=Outcome(outcome), name=name, distance=distance, threshold=0.8,
                    model_id="facegate-irn-0123456789ab", reason=reason, frames_used=3, **kw)


def test_home_assistant_discovers_a_lock_an_event_and_a_sensor_on_one_device(broker, base):
    door = MqttDoor(mqtt_cfg(broker.port, base), model_id="facegate-irn-0123456789ab",
                    unlock=lambda: None, lock=lambda: None).start()
    try:
        assert door.link.wait_connected(5) and door.link.wait_idle(5)
        # a subscriber arriving later (Home Assistant starting) gets everything retained
        ha = Watcher(broker.port, ("homeassistant/#", f"{base}/#"), client_id="ha").start()
        node = door.cfg.node_id
        lock = ha.wait_for(f"homeassistant/lock/{node}/lock/config")
        event = ha.wait_for(f"homeassistant/event/{node}/decision/config")
        person = ha.wait_for(f"homeassistant/sensor/{node}/last_person/config")
        assert lock.retain and event.retain and person.retain
        lock, event, person = lock.json(), event.json(), person.json()
        assert lock["command_topic"] == f"{base}/lock/set" and lock["state_topic"] == f"{base}/lock"
        assert (lock["payload_lock"], lock["payload_unlock"]) == ("LOCK", "UNLOCK")
        assert (lock["state_locked"], lock["state_unlocked"], lock["state_jammed"]) == ("LOCKED", "UNLOCKED", "JAMMED")
        assert lock["retain"] is False and lock["optimistic"] is False  # commands are never retained
        assert event["event_types"] == list(EVENT_TYPES) and event["state_topic"] == f"{base}/decision"
        assert {"grant", "deny", "unknown_face", "lockout", "spoof_rejected"} <= set(event["event_types"])
        assert person["value_template"] == "{{ value_json.name }}"
        for entity in (lock, event, person):
            assert entity["availability_topic"] == f"{base}/availability"
            assert (entity["payload_available"], entity["payload_not_available"]) == ("online", "offline")
            assert entity["device"] == lock["device"]  # one device block
            assert entity["unique_id"].startswith(node)
        device = lock["device"]
        assert device["identifiers"] == [node] and device["model"] == "facegate-irn-0123456789ab"
        assert device["sw_version"] and device["manufacturer"] == "facegate"
        assert ha.wait_for(f"{base}/availability").payload == b"online"
        assert ha.wait_for(f"{base}/lock").payload == b"LOCKED"
        assert not ha.on(f"{base}/lock/set")  # nothing retained on the command topic
        ha.stop()
    finally:
        door.close()


def test_a_real_unlock_pulse_is_published_as_unlocked_then_locked(broker, base, mock_factory):
    watcher = Watcher(broker.port, (f"{base}/lock",), client_id="w-pulse").start()
    door = MqttDoor(mqtt_cfg(broker.port, base), model_id="m", unlock=lambda: None, lock=lambda: None).start()
    lock = GpioLock(17, unlock_seconds=0.3, pin_factory=mock_factory)
    lock.add_listener(door.lock_state)
    try:
        assert door.link.wait_connected(5)
        watcher.wait_for(f"{base}/lock", lambda m: m.payload == b"LOCKED")
        lock.unlock()
        watcher.wait_for(f"{base}/lock", lambda m: m.payload == b"UNLOCKED")
        time.sleep(0.5)
        states = [m.payload for m in watcher.wait_count(f"{base}/lock", 3)]
        assert states[-2:] == [b"UNLOCKED", b"LOCKED"]
        assert [s.state for s in mock_factory.pin(17).states] == [False, True, False]
    finally:
        lock.close()
        door.close()
        watcher.stop()


class _JammingLock(LogLock):
    """A relay whose output cannot be driven once it is asked to open."""

    def _set_energised(self, energised: bool) -> None:
        if energised:
            raise OSError("relay driver not answering")
        super()._set_energised(energised)


def test_a_lock_that_cannot_drive_its_relay_is_published_as_jammed(broker, base):
    watcher = Watcher(broker.port, (f"{base}/lock",), client_id="w-jam").start()
    door = MqttDoor(mqtt_cfg(broker.port, base), model_id="m", unlock=lambda: None, lock=lambda: None).start()
    lock = _JammingLock(unlock_seconds=0.3)
    lock.add_listener(door.lock_state)
    try:
        with pytest.raises(OSError):
            lock.unlock()
        watcher.wait_for(f"{base}/lock", lambda m: m.payload == b"JAMMED")
        assert lock.is_locked  # it never reports open when the relay did not move
    finally:
        lock.close()
        door.close()
        watcher.stop()


def test_decisions_become_events_with_attributes_and_the_last_person(broker, base):
    cfg = mqtt_cfg(broker.port, base, frigate_events=True, camera_name="porch")
    watcher = Watcher(broker.port, (f"{base}/#",), client_id="w-events").start()
    door = MqttDoor(cfg, model_id="m", unlock=lambda: None, lock=lambda: None).start()
    try:
        door.decision(decision("grant", "alice", 0.41))
        door.decision(decision("deny", None, 1.2))  # nobody near: an unknown face
        door.decision(decision("deny", None, 0.7, reason="conflicting identities: bob, carol; nearest bob at 0.7",
                               extra={"best_name": "bob"}))  # near someone, refused
        door.decision(decision("lockout", None, None))
        door.decision(decision("deny", None, 0.5, extra={"liveness": "planar motion"}))
        door.decision(decision("pending", None, 0.4))  # per-frame outcomes are not published
        events = [m.json() for m in watcher.wait_count(f"{base}/decision", 5)]
        assert [e["event_type"] for e in events] == ["grant", "unknown_face", "deny", "lockout", "spoof_rejected"]
        grant = events[0]
        assert (grant["person"], grant["distance"], grant["threshold"], grant["model_id"]) == (
            "alice", 0.41, 0.8, "facegate-irn-0123456789ab")
        last = watcher.wait_for(f"{base}/last_person")
        assert last.json()["name"] == "alice"
        frigate = [m.json() for m in watcher.wait_count(f"{base}/events", 5)]
        assert {"id", "camera", "name", "score", "timestamp"} <= set(frigate[0])
        assert frigate[0]["camera"] == "porch" and frigate[0]["name"] == "alice"
        assert frigate[0]["score"] == pytest.approx(1 - 0.41**2 / 2, abs=1e-4)
        assert frigate[1]["name"] == "unknown" and len({f["id"] for f in frigate}) == 5
        assert len(watcher.on(f"{base}/decision")) == 5
        # a refusal never names the enrolled people it was near to
        assert not any(b"bob" in m.payload or b"carol" in m.payload for m in watcher.messages)
    finally:
        door.close()
        watcher.stop()


def test_face_crops_go_out_only_when_saving_is_on_and_asked_for(broker, base):
    crop = np.full((112, 112, 3), 128, np.uint8)
    watcher = Watcher(broker.port, (f"{base}/snapshot",), client_id="w-crops").start()
    asked = mqtt_cfg(broker.port, base, publish_face_crops=True)
    for allowed in (False, True):  # image saving off, then on
        door = MqttDoor(asked, model_id="m", unlock=lambda: None, lock=lambda: None, crops_allowed=allowed).start()
        d = decision("grant", "alice")
        door.decision(d)
        door.face_crop(d, crop)
        door.link.wait_idle(5)
        door.close()
    snapshots = watcher.wait_count(f"{base}/snapshot", 2, timeout=2)
    assert len(snapshots) == 1 and snapshots[0].payload[:2] == b"\xff\xd8"  # one JPEG: the allowed one
    watcher.stop()


def test_events_wait_for_a_restarted_broker_and_only_the_oldest_past_the_bound_are_dropped(tmp_path, base):
    broker = Broker(tmp_path / "restart").start()
    # a subscriber with a persistent session: the broker keeps its messages across the restart
    watcher = Watcher(broker.port, (f"{base}/decision",), client_id="w-restart", persistent=True).start()
    door = MqttDoor(mqtt_cfg(broker.port, base, queue_size=5), model_id="m", unlock=lambda: None,
                    lock=lambda: None).start()
    try:
        assert door.link.wait_connected(5)
        door.decision(decision("grant", "before"))
        watcher.wait_for(f"{base}/decision")
        broker.stop()
        deadline = time.monotonic() + 5
        while door.link.stats.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not door.link.stats.connected
        t0 = time.perf_counter()
        for i in range(8):  # the door goes on deciding while the broker is away
            door.decision(decision("grant", f"p{i}"))
        assert time.perf_counter() - t0 < 0.05  # queued, never waited for
        assert door.link.stats.dropped == 3 and door.link.stats.queued == 5
        broker.start()
        got = watcher.wait_count(f"{base}/decision", 6, timeout=20)
        assert [m.json()["person"] for m in got] == ["before", "p3", "p4", "p5", "p6", "p7"]
        stats = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (stats is None or stats.get("dropped") != 3):
            stats = next((m.json() for m in reversed(watcher.messages) if m.topic.endswith("mqtt_stats")), None)
            if stats is None:
                w2 = Watcher(broker.port, (f"{base}/mqtt_stats",), client_id="w-stats").start()
                stats = w2.wait_for(f"{base}/mqtt_stats").json()
                w2.stop()
        assert stats["dropped"] == 3  # Home Assistant's diagnostic sensor shows the loss
    finally:
        door.close()
        watcher.stop()
        broker.stop()


def test_a_broker_that_never_answers_costs_the_door_nothing(base):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # accepts connections, never says a word
    try:
        door = MqttDoor(mqtt_cfg(silent.getsockname()[1], base, queue_size=50), model_id="m",
                        unlock=lambda: None, lock=lambda: None).start()
        t0 = time.perf_counter()
        for i in range(200):
            door.decision(decision("deny", None, 1.3))
            door.lock_state("unlocked" if i % 2 else "locked")
        took = time.perf_counter() - t0
        assert took < 0.2, f"{took:.3f} s for 200 decisions"
        assert door.link.stats.dropped == 150 and not door.link.stats.connected
        t0 = time.perf_counter()
        door.close()
        assert time.perf_counter() - t0 < 8
    finally:
        silent.close()


def test_a_broker_refusing_the_password_leaves_the_door_deciding(tmp_path, base, mock_factory):
    broker = Broker(tmp_path / "auth", users={"door": "right"})
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    broker.start()
    try:
        pw = tmp_path / "pw"
        pw.write_text("wrong\n")
        pw.chmod(0o600)
        door = MqttDoor(mqtt_cfg(broker.port, base, username="door", password_file=str(pw)), model_id="m",
                        unlock=lambda: None, lock=lambda: None).start()
        lock = GpioLock(17, unlock_seconds=0.1, pin_factory=mock_factory)
        lock.add_listener(door.lock_state)
        lock.unlock()
        door.decision(decision("grant", "alice"))
        time.sleep(0.4)
        assert [s.state for s in mock_factory.pin(17).states] == [False, True, False]
        assert not door.link.stats.connected and door.link.stats.queued == 1
        lock.close()
        door.close()
    finally:
        broker.stop()


# --- the daemon itself -------------------------------------------------------------------------------------
def fake_stage_config(base: Config) -> Config:
    """Every replayed frame judged, and no liveness check (the fake detector's landmarks never move, as a
    photo's would not): these tests are about what the door publishes, not whom it lets in."""
    cfg = replace(base, policy=replace(base.policy, min_interval_seconds=0.0), quality=NO_QUALITY_GATE)
    if hasattr(cfg, "liveness"):
        cfg = replace(cfg, liveness=replace(cfg.liveness, enabled=False))
    return cfg


def daemon_config(tmp_path: Path, mqtt: MqttConfig) -> Config:
    base = fake_stage_config(Config.default())
    return replace(base, lock=replace(base.lock, type="log", unlock_seconds=0.2),
                   storage=replace(base.storage, gallery=str(tmp_path / "g.db")),
                   daemon=replace(base.daemon, watchdog=False), mqtt=mqtt)


def test_the_daemon_publishes_its_grant_and_the_lock_pulse(broker, base, tmp_path, tmp_gallery, fake_detector,
                                                            fake_embedder, file_camera):
    tmp_gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    cfg = daemon_config(tmp_path, mqtt_cfg(broker.port, base))
    watcher = Watcher(broker.port, (f"{base}/#",), client_id="w-daemon").start()
    lock = LogLock(unlock_seconds=0.2)
    with AuditLog(cfg.storage.gallery) as audit, DoorDaemon(
            cfg, source=file_camera([frame(w) for w in (None, 1, 1, 1, 1, None)]), lock=lock, gallery=tmp_gallery,
            audit=audit, pipeline=FacePipeline(fake_detector, fake_embedder, cfg.quality),
            notifier=NullNotifier()) as daemon:
        assert daemon.sinks and daemon.sinks[0].link.wait_connected(5)
        stats = daemon.run()
        time.sleep(0.3)  # the relock
    assert stats.grants == 1
    grant = watcher.wait_for(f"{base}/decision").json()
    assert grant["event_type"] == "grant" and grant["person"] == "alice" and grant["model_id"] == fake_embedder.model_id
    assert watcher.wait_for(f"{base}/last_person").json()["name"] == "alice"
    states = [m.payload for m in watcher.on(f"{base}/lock")]
    assert b"UNLOCKED" in states and states[states.index(b"UNLOCKED") + 1:][:1] == [b"LOCKED"]
    assert not watcher.on(f"{base}/snapshot")  # no face image leaves the door unless asked for
    # closing the daemon says offline on its way out
    assert watcher.wait_for(f"{base}/availability", lambda m: m.payload == b"offline")
    watcher.stop()
    lock.close()


DAEMON_SCRIPT = textwrap.dedent("""
    import sys, tomllib
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from dataclasses import replace
    from facegate.edge.align import NO_QUALITY_GATE
    from facegate.edge.camera import ReplaySource
    from facegate.edge.config import Config
    from facegate.edge.pipeline import FacePipeline
    from facegate.edge.service import DoorDaemon, NullNotifier
    from tests.conftest import FakeDetector, FakeEmbedder

    cfg = Config.load(sys.argv[2])
    frames = [np.zeros((48, 64, 3), np.uint8)] * 10
    with DoorDaemon(cfg, source=ReplaySource(frames, fps=20, loop=True), notifier=NullNotifier(),
                    pipeline=FacePipeline(FakeDetector(), FakeEmbedder(), NO_QUALITY_GATE)) as daemon:
        print("running", flush=True)
        daemon.run(stop_when_finished=False)
""")


def test_the_last_will_says_offline_when_the_daemon_process_is_killed(broker, base, tmp_path, fake_embedder):
    from facegate.edge.gallery import Gallery

    with Gallery(tmp_path / "g.db") as gallery:  # a door with someone to let in, as a real one starts
        gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    config = tmp_path / "door.toml"
    config.write_text(textwrap.dedent(f"""
        [lock]
        type = "log"
        [storage]
        gallery = "{tmp_path / 'g.db'}"
        [daemon]
        watchdog = false
        [mqtt]
        enabled = true
        host = "127.0.0.1"
        port = {broker.port}
        base_topic = "{base}"
        client_id = "killed-door"
        keepalive_seconds = 5
    """))
    watcher = Watcher(broker.port, (f"{base}/availability",), client_id="w-will").start()
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"),) if p)}
    proc = subprocess.Popen([sys.executable, "-c", DAEMON_SCRIPT, str(repo), str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        watcher.wait_for(f"{base}/availability", lambda m: m.payload == b"online", timeout=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        offline = watcher.wait_for(f"{base}/availability", lambda m: m.payload == b"offline", timeout=15)
        assert offline.payload == b"offline"
        # and it stays retained for whoever looks later (Home Assistant restarting)
        late = Watcher(broker.port, (f"{base}/availability",), client_id="w-late").start()
        assert late.wait_for(f"{base}/availability").payload == b"offline"
        late.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        watcher.stop()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]


class _Beats:
    def __init__(self) -> None:
        self.watchdog: list[float] = []

    def notify(self, state: str) -> None:
        if "WATCHDOG=1" in state:
            self.watchdog.append(time.monotonic())


def test_the_watchdog_is_fed_as_usual_while_the_broker_never_answers(base, tmp_path, tmp_gallery, fake_detector,
                                                                     fake_embedder, file_camera):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    tmp_gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    cfg = daemon_config(tmp_path, mqtt_cfg(silent.getsockname()[1], base, queue_size=3))
    cfg = replace(cfg, daemon=replace(cfg.daemon, watchdog=True))
    beats, lock = _Beats(), LogLock(unlock_seconds=0.1)
    visit = [None, 1, 1, 1, 1, None] + [2] * 10 + [None] * 9  # 25 frames, 0.5 s at 50 fps, replayed 5 times
    try:
        with AuditLog(cfg.storage.gallery) as audit, DoorDaemon(
                cfg, source=file_camera([frame(w) for w in visit], loop=True), lock=lock,
                gallery=tmp_gallery, audit=audit, pipeline=FacePipeline(fake_detector, fake_embedder, cfg.quality),
                notifier=beats) as daemon:
            t0 = time.monotonic()
            stats = daemon.run(max_frames=5 * len(visit))
            took = time.monotonic() - t0
            link = daemon.sinks[0].link.stats
            audited = len(audit.recent())
    finally:
        silent.close()
        lock.close()
    assert stats.grants >= 1 and stats.denies >= 1  # the door decided and opened as ever
    assert not link.connected and link.queued == min(audited, 3)  # its events wait, bounded
    assert link.queued + link.dropped == audited
    # fed all along: no gap longer than a second and a half, from the start to the end
    times = np.array([t0, *beats.watchdog, t0 + took])
    assert len(beats.watchdog) >= 2 and np.diff(times).max() < 1.5, np.diff(times).max()


def test_the_daemon_sends_the_crop_of_an_audited_decision_when_both_switches_are_on(
        broker, base, tmp_path, tmp_gallery, fake_detector, fake_embedder, file_camera):
    import cv2

    tmp_gallery.enroll("alice", [Embedding(fake_embedder.vector_for(1), fake_embedder.model_id)])
    cfg = daemon_config(tmp_path, mqtt_cfg(broker.port, base, publish_face_crops=True))
    cfg = replace(cfg, storage=replace(cfg.storage, save_face_images=True))
    watcher = Watcher(broker.port, (f"{base}/#",), client_id="w-crop-daemon").start()
    lock = LogLock(unlock_seconds=0.2)
    with AuditLog(cfg.storage.gallery) as audit, DoorDaemon(
            cfg, source=file_camera([frame(w) for w in (None, 1, 1, 1, 1, None)]), lock=lock, gallery=tmp_gallery,
            audit=audit, pipeline=FacePipeline(fake_detector, fake_embedder, cfg.quality),
            notifier=NullNotifier()) as daemon:
        assert daemon.sinks[0].link.wait_connected(5)
        daemon.run()
    lock.close()
    snap = watcher.wait_for(f"{base}/snapshot")
    image = cv2.imdecode(np.frombuffer(snap.payload, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (112, 112, 3)
    assert len(watcher.on(f"{base}/snapshot")) == len(watcher.on(f"{base}/decision")) == 1  # the grant's only
    watcher.stop()
