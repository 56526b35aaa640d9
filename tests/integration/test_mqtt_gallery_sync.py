"""Several doors, one household: signed gallery snapshots through a real mosquitto.

The blob is opaque here (the transport never opens it); the importer the
doors use swaps a file atomically, as the gallery importer swaps the gallery.
"""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path

import pytest

from facegate.edge.atomic import atomic_write_bytes
from facegate.edge.cli.main import main
from facegate.edge.errors import ConfigError, SnapshotRefused
from facegate.edge.mqtt.config import MqttConfig
from facegate.edge.mqtt.door import MqttDoor
from facegate.edge.mqtt.snapshot import generate_keypair, load_private_key, load_public_key, open_snapshot, \
    seal_snapshot
from facegate.edge.mqtt.sync import GallerySync

from .mqtt_broker import Broker, Watcher, publish

MODEL = "facegate-irn-0123456789ab"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("mosquitto-sync")).start()
    yield b
    b.stop()


@pytest.fixture()
def keys(tmp_path):
    public = generate_keypair(tmp_path / "household.key")
    return load_private_key(tmp_path / "household.key"), public


class FileDoor:
    """A door whose 'gallery' is a file the importer replaces atomically; it records every import."""

    def __init__(self, broker, folder: Path, name: str, topic: str, public_key_path: Path) -> None:
        self.gallery = folder / f"{name}.gallery"
        self.gallery.write_bytes(b"empty")
        self.imports: list[int] = []
        cfg = MqttConfig(enabled=True, host="127.0.0.1", port=broker.port, base_topic=f"facegate/{name}",
                         client_id=name, keepalive_seconds=5, gallery_sync=True, gallery_topic=topic,
                         gallery_public_key=str(public_key_path))
        sync = GallerySync(public_key=load_public_key(public_key_path), model_id=MODEL,
                           state_path=folder / f"{name}.sync.json", importer=self._import)
        self.door = MqttDoor(cfg, model_id=MODEL, unlock=lambda: None, lock=lambda: None, gallery_sync=sync)
        self.results = Watcher(broker.port, (f"facegate/{name}/gallery/result",), client_id=f"w-{name}").start()
        self.door.start()

    def _import(self, blob: bytes, header) -> None:
        atomic_write_bytes(self.gallery, blob)
        self.imports.append(header.version)

    def result(self, n: int) -> dict:
        got = self.results.wait_count(self.results.topics[0], n, timeout=10)
        assert len(got) >= n, f"only {len(got)} gallery result(s)"
        return got[n - 1].json()

    def close(self) -> None:
        self.door.close()
        self.results.stop()


def _tamper_blob(payload: bytes) -> bytes:
    msg = json.loads(payload)
    blob = bytearray(base64.b64decode(msg["blob"]))
    blob[len(blob) // 2] ^= 0x01
    msg["blob"] = base64.b64encode(bytes(blob)).decode()
    return json.dumps(msg).encode()


def _tamper_header(payload: bytes, **changes) -> bytes:
    msg = json.loads(payload)
    msg["header"].update(changes)
    return json.dumps(msg).encode()


def test_two_doors_follow_the_signed_gallery_and_refuse_every_bad_snapshot(broker, keys, tmp_path):
    private, public_path = keys
    topic = f"facegate/household_{tmp_path.name[-6:]}/gallery"
    config = tmp_path / "publisher.toml"
    config.write_text(textwrap.dedent(f"""
        [mqtt]
        host = "127.0.0.1"
        port = {broker.port}
        base_topic = "facegate/publisher"
        gallery_topic = "{topic}"
    """))
    export = tmp_path / "gallery.export"
    export.write_bytes(b"encrypted-gallery-v1" * 50)
    front = FileDoor(broker, tmp_path, "front", topic, public_path)
    back = FileDoor(broker, tmp_path, "back", topic, public_path)
    try:
        assert front.door.link.wait_connected(5) and back.door.link.wait_connected(5)
        assert main(["gallery", "publish", str(export), "--signing-key", str(tmp_path / "household.key"),
                     "--model-id", MODEL, "--version", "100", "--config", str(config)]) == 0
        for door in (front, back):
            assert door.result(1) == {"applied": True, "reason": "applied", "version": 100}
            assert door.gallery.read_bytes() == export.read_bytes()

        good = seal_snapshot(b"encrypted-gallery-v2", model_id=MODEL, private_key=private, version=200)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        stranger = Ed25519PrivateKey.generate()
        unsigned = json.loads(good)
        unsigned["signature"] = ""
        bad = [
            (_tamper_blob(good), "tampered"),
            (_tamper_header(good, version=300), "bad signature"),
            (json.dumps(unsigned).encode(), "unsigned"),
            (seal_snapshot(b"evil", model_id=MODEL, private_key=stranger, version=400), "bad signature"),
            (seal_snapshot(b"other", model_id="dlib-resnet-1234", private_key=private, version=500), "model"),
            (seal_snapshot(b"old", model_id=MODEL, private_key=private, version=50), "older"),
            (b"not json at all", "not a gallery snapshot"),
        ]
        for i, (payload, why) in enumerate(bad, start=2):
            publish(broker.port, topic, payload, retain=True)
            for door in (front, back):
                result = door.result(i)
                assert not result["applied"] and why in result["reason"], (why, result)
                assert door.gallery.read_bytes() == export.read_bytes()  # untouched
        assert front.imports == back.imports == [100]

        publish(broker.port, topic, good, retain=True)
        for door in (front, back):
            assert door.result(len(bad) + 2)["applied"]
            assert door.gallery.read_bytes() == b"encrypted-gallery-v2"
        # the version survives a restart: the retained v2 is not applied twice, v1 never again
        front.close()
        front = FileDoor(broker, tmp_path, "front", topic, public_path)
        assert front.result(1) == {"applied": False, "reason": "already applied", "version": 200}
        assert json.loads((tmp_path / "front.sync.json").read_text())["version"] == 200
    finally:
        front.close()
        back.close()


def test_a_door_that_was_off_gets_the_retained_snapshot_when_it_connects(broker, keys, tmp_path):
    private, public_path = keys
    topic = f"facegate/household_{tmp_path.name[-6:]}/gallery"
    publish(broker.port, topic, seal_snapshot(b"while-you-were-out", model_id=MODEL, private_key=private,
                                              version=7), retain=True)
    late = FileDoor(broker, tmp_path, "late", topic, public_path)
    try:
        assert late.result(1)["applied"] and late.gallery.read_bytes() == b"while-you-were-out"
    finally:
        late.close()


def test_an_import_that_fails_leaves_the_gallery_and_the_version_as_they_were(keys, tmp_path):
    from facegate.edge.errors import GalleryError

    private, public_path = keys

    def failing(blob, header):
        raise GalleryError("disk full")

    sync = GallerySync(public_key=load_public_key(public_path), model_id=MODEL, state_path=tmp_path / "s.json",
                       importer=failing)
    result = sync.receive(seal_snapshot(b"x", model_id=MODEL, private_key=private, version=3))
    assert not result.applied and "disk full" in result.reason
    assert sync.version is None and not (tmp_path / "s.json").exists()


def test_a_door_without_a_gallery_importer_refuses_snapshots(keys, tmp_path):
    private, public_path = keys
    sync = GallerySync(public_key=load_public_key(public_path), model_id=MODEL, state_path=None, importer=None)
    result = sync.receive(seal_snapshot(b"x", model_id=MODEL, private_key=private))
    assert not result.applied and "no gallery importer" in result.reason


def test_snapshot_checks_without_a_broker(keys) -> None:
    private, _ = keys
    payload = seal_snapshot(b"blob", model_id=MODEL, private_key=private, version=1)
    header, blob = open_snapshot(payload, public_key=private.public_key(), model_id=MODEL)
    assert (header.version, blob, header.size) == (1, b"blob", 4)
    with pytest.raises(SnapshotRefused, match="tampered"):
        open_snapshot(_tamper_blob(payload), public_key=private.public_key(), model_id=MODEL)
    with pytest.raises(SnapshotRefused, match="made with model"):
        open_snapshot(payload, public_key=private.public_key(), model_id="other")


def test_gallery_sync_needs_the_publishers_public_key_and_a_readonly_signing_key(tmp_path) -> None:
    from facegate.edge.config import Config

    with pytest.raises(ConfigError, match="mqtt.gallery_public_key"):
        Config.from_dict({"mqtt": {"gallery_sync": True}})
    generate_keypair(tmp_path / "k")
    (tmp_path / "k").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_private_key(tmp_path / "k")
    with pytest.raises(ConfigError, match="not overwriting"):
        generate_keypair(tmp_path / "k")


# --- the real thing: encrypted gallery backups between two daemons ---------------------------------------
def test_two_daemons_take_the_households_encrypted_gallery_and_refuse_a_tampered_one(broker, keys, tmp_path):
    pytest.importorskip("facegate.edge.gallery.backup", reason="needs the encrypted gallery backups "
                        "(facegate gallery export/import)")
    from dataclasses import replace

    import numpy as np

    from facegate.edge.align import NO_QUALITY_GATE
    from facegate.edge.audit import AuditLog
    from facegate.edge.camera import ReplaySource
    from facegate.edge.config import Config
    from facegate.edge.gallery import Gallery
    from facegate.edge.lock import LogLock
    from facegate.edge.pipeline import FacePipeline
    from facegate.edge.service import DoorDaemon, NullNotifier
    from facegate.edge.types import Embedding
    from tests.conftest import FakeDetector, FakeEmbedder

    _, public_path = keys
    topic = f"facegate/household_{tmp_path.name[-6:]}/gallery"
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    emb = FakeEmbedder()

    # the publishing door: two people, exported (encrypted), then signed and published
    home = tmp_path / "home"
    home.mkdir()
    with Gallery(home / "gallery.db") as g:
        g.enroll("alice", [Embedding(emb.vector_for(1), emb.model_id)])
        g.enroll("bob", [Embedding(emb.vector_for(2), emb.model_id)])
    export = tmp_path / "household.backup"
    assert main(["gallery", "export", str(export), "--gallery", str(home / "gallery.db"),
                 "--passphrase-file", str(passphrase)]) == 0
    publisher = tmp_path / "publisher.toml"
    publisher.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ngallery_topic = "{topic}"\n')

    def door(name: str):
        folder = tmp_path / name
        folder.mkdir()
        base = Config.default()
        cfg = replace(base, lock=replace(base.lock, type="log"), quality=NO_QUALITY_GATE,
                      storage=replace(base.storage, gallery=str(folder / "gallery.db")),
                      daemon=replace(base.daemon, watchdog=False),
                      mqtt=MqttConfig(enabled=True, host="127.0.0.1", port=broker.port, base_topic=f"facegate/{name}",
                                      client_id=name, gallery_sync=True, gallery_topic=topic,
                                      gallery_public_key=str(public_path),
                                      gallery_passphrase_file=str(passphrase)))
        gallery = Gallery(cfg.storage.gallery)
        gallery.enroll("mallory", [Embedding(emb.vector_for(3), emb.model_id)])  # replaced by the snapshot
        d = DoorDaemon(cfg, source=ReplaySource([np.zeros((8, 8, 3), np.uint8)]), lock=LogLock(),
                       gallery=gallery, audit=AuditLog(cfg.storage.gallery), notifier=NullNotifier(),
                       pipeline=FacePipeline(FakeDetector(), FakeEmbedder(), NO_QUALITY_GATE))
        watcher = Watcher(broker.port, (f"facegate/{name}/gallery/result",), client_id=f"w-{name}").start()
        return d, gallery, watcher

    doors = [door("kitchen"), door("garage")]
    try:
        assert all(d.sinks[0].link.wait_connected(5) for d, _, _ in doors)
        assert main(["gallery", "publish", str(export), "--signing-key", str(tmp_path / "household.key"),
                     "--config", str(publisher)]) == 0
        for d, gallery, watcher in doors:
            result = watcher.wait_for(watcher.topics[0], timeout=20).json()
            assert result["applied"], result
            assert sorted(p.name for p in gallery.people()) == ["alice", "bob"]  # mallory is gone: a swap
            assert gallery.identify(Embedding(emb.vector_for(1), emb.model_id), 0.5).name == "alice"
        good = json.loads(doors[0][2].messages[0].payload)["version"]
        tampered = seal_snapshot(export.read_bytes()[:-1] + b"\x00", model_id=emb.model_id,
                                 private_key=load_private_key(tmp_path / "household.key"), version=good + 1)
        publish(broker.port, topic, _tamper_blob(tampered), retain=True)  # and its signature no longer fits
        for d, gallery, watcher in doors:
            result = watcher.wait_count(watcher.topics[0], 2, timeout=10)[1].json()
            assert not result["applied"] and "tampered" in result["reason"]
            assert sorted(p.name for p in gallery.people()) == ["alice", "bob"]
        # signed, but the backup inside was altered: the backup's own AES-GCM check refuses it
        publish(broker.port, topic, tampered, retain=True)
        for d, gallery, watcher in doors:
            result = watcher.wait_count(watcher.topics[0], 3, timeout=20)[2].json()
            assert not result["applied"] and "import failed" in result["reason"], result
            assert sorted(p.name for p in gallery.people()) == ["alice", "bob"]
    finally:
        for d, gallery, watcher in doors:
            watcher.stop()
            d.close()
            gallery.close()


def test_publish_refuses_in_one_line_when_the_broker_is_not_there(keys, tmp_path, capsys):
    config = tmp_path / "publisher.toml"
    config.write_text('[mqtt]\nhost = "127.0.0.1"\nport = 9\n')  # nothing listens on the discard port
    export = tmp_path / "gallery.export"
    export.write_bytes(b"blob")
    args = ["gallery", "publish", str(export), "--model-id", MODEL, "--config", str(config), "--timeout", "2"]
    assert main(args) == 2
    assert "needs --signing-key" in capsys.readouterr().err
    assert main([*args, "--signing-key", str(tmp_path / "household.key")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("facegate gallery: error: cannot reach the broker at 127.0.0.1:9") and "\n" not in err
