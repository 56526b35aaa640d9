"""A real mosquitto for the MQTT tests: its own config, loopback ports, optional TLS and passwords.

Debian's ``mosquitto`` is installed by ``.ci/run`` where missing; the tests
skip, saying why, only where it cannot be found. Certificates are made here
with ``cryptography`` (a CA and a server certificate for 127.0.0.1).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed: pip install 'facegate[mqtt]'")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run installs it) "
                    "and the MQTT tests need a real broker")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a throw-away CA and a certificate for 127.0.0.1 / localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facegate test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths


class Broker:
    """One mosquitto process: a plain listener, and a TLS one with password checks when asked."""

    def __init__(self, folder: Path, *, tls: bool = False, users: dict[str, str] | None = None) -> None:
        self.binary = mosquitto_binary()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.ca = None
        self.proc: subprocess.Popen | None = None
        lines = ["per_listener_settings false", "persistence true", f"persistence_location {folder}/",
                 f"log_dest file {folder / 'mosquitto.log'}", "log_type all",
                 f"user {pwd.getpwuid(os.getuid()).pw_name}", "allow_anonymous true",
                 f"listener {self.port} 127.0.0.1"]
        if users:
            pw = folder / "passwd"
            pw.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", str(pw),
                                user, password], check=True, capture_output=True)
            lines.append(f"password_file {pw}")
        if tls:
            self.ca, cert, key = make_certificates(folder)
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.ca}", f"certfile {cert}",
                      f"keyfile {key}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()[-500:]}"
                                   f"{self.log()[-1000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        p = self.folder / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self):
        return json.loads(self.payload)


@dataclass
class Watcher:
    """A plain subscriber that keeps every message it gets (tests read ``messages``)."""

    port: int
    topics: tuple[str, ...] = ("#",)
    client_id: str = "watcher"
    persistent: bool = False
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        clean_session=not self.persistent)
        c.on_connect = lambda *a: c.subscribe([(t, 1) for t in self.topics])
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def start(self) -> Watcher:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(5), "watcher could not subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, predicate=lambda m: True, timeout: float = 5.0) -> Received:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if m.topic == topic and predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({m.topic for m in self.messages})
                    raise AssertionError(f"nothing on {topic} within {timeout} s (topics seen: {seen})")
                self._cond.wait(left)

    def wait_count(self, topic: str, n: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([m for m in self.messages if m.topic == topic]) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return [m for m in self.messages if m.topic == topic]


def publish(port: int, topic: str, payload: bytes | str, *, retain: bool = False, tls_ca: Path | None = None,
            auth: tuple[str, str] | None = None) -> None:
    """One message from a test client, acknowledged by the broker."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    if auth:
        c.username_pw_set(*auth)
    if tls_ca:
        c.tls_set(ca_certs=str(tls_ca))
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    info = c.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
