"""`facegate doctor`: each problem a Pi owner meets is named, with its fix (temp files, no hardware)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from facegate.edge.cli.defaults import ConfigChoice
from facegate.edge.cli.main import main
from facegate.edge.doctor import Doctor, clock, devices, diagnose, unit
from facegate.edge.doctor.clock import ClockState
from facegate.edge.gallery import Gallery
from facegate.edge.gallery.keys import create_key
from facegate.edge.types import Embedding

MODEL = "facegate-test-0123456789ab"
#: someone who is neither root nor the owner of any temp file
PI = devices.Identity("pi", 54321, frozenset({54321}))


def write_config(tmp_path: Path, extra: str = "", gallery: Path | None = None) -> Path:
    gallery = gallery or tmp_path / "state" / "gallery.db"
    cfg = tmp_path / "facegate.toml"
    cfg.write_text(f'[storage]\ngallery = "{gallery}"\nkey_file = "{tmp_path / "gallery.key"}"\n{extra}\n')
    return cfg


def doctor_for(cfg: Path, tmp_path: Path, **kw) -> Doctor:
    kw.setdefault("unit_paths", (tmp_path / "no-such.service",))
    doc = Doctor(ConfigChoice(cfg, "--config"), **kw)
    assert doc.check_config().status == "ok"
    return doc


def enroll(cfg_gallery: Path, key_file: Path, model: str = MODEL) -> None:
    v = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    with Gallery(cfg_gallery, key_file=key_file) as g:
        g.enroll("alice", [Embedding(v / np.linalg.norm(v), model)])


# --- config ----------------------------------------------------------------------------
def test_a_missing_config_fails_with_the_install_command(tmp_path):
    c = Doctor(ConfigChoice(tmp_path / "nope.toml", "--config"), unit_paths=()).check_config()
    assert c.status == "fail" and "does not exist" in c.message
    assert "install -m 0640 -g facegate" in c.fix and str(tmp_path / "nope.toml") in c.fix


def test_an_invalid_config_names_the_key_and_says_how_to_find_the_line(tmp_path):
    cfg = tmp_path / "facegate.toml"
    cfg.write_text("[lock]\npin = 99\n")
    c = Doctor(ConfigChoice(cfg, "--config"), unit_paths=()).check_config()
    assert c.status == "fail" and "lock.pin" in c.message and "99" in c.message
    assert f"facegate config check {cfg}" in c.fix


def test_an_unreadable_system_config_says_to_use_sudo():
    c = Doctor(ConfigChoice(None, "system", unreadable=Path("/etc/facegate/facegate.toml")),
               unit_paths=()).check_config()
    assert c.status == "fail" and "cannot read" in c.message and "sudo facegate doctor" in c.fix


def test_a_service_started_with_another_config_is_flagged(tmp_path):
    cfg = write_config(tmp_path)
    service = tmp_path / "facegate.service"
    service.write_text("[Service]\nExecStart=/opt/facegate/venv/bin/facegate run --config /etc/other.toml\n")
    c = Doctor(ConfigChoice(cfg, "--config"), unit_paths=(service,)).check_config()
    assert c.status == "warn" and "/etc/other.toml" in c.message and "--config /etc/other.toml" in c.fix


# --- gallery and model ------------------------------------------------------------------
def test_a_missing_gallery_says_how_to_enroll_with_the_doors_config(tmp_path):
    cfg = write_config(tmp_path)
    c = doctor_for(cfg, tmp_path).check_gallery()
    assert c.status == "warn" and "does not exist" in c.message
    assert "facegate enroll NAME PHOTO.jpg" in c.fix and f"--config {cfg}" in c.fix


def test_an_empty_gallery_grants_no_one(tmp_path):
    cfg = write_config(tmp_path)
    Gallery(tmp_path / "state" / "gallery.db").close()
    c = doctor_for(cfg, tmp_path).check_gallery()
    assert c.status == "warn" and "nobody enrolled" in c.message and "enroll" in c.fix


def test_a_gallery_of_another_model_fails_and_says_to_reenroll(tmp_path):
    cfg = write_config(tmp_path)
    enroll(tmp_path / "state" / "gallery.db", tmp_path / "gallery.key", model="old-model-aaaaaaaaaaaa")
    doc = doctor_for(cfg, tmp_path)
    doc.model_id = MODEL
    c = doc.check_gallery()
    assert c.status == "fail" and "old-model-aaaaaaaaaaaa" in c.message and MODEL in c.message
    assert "enroll everyone again" in c.fix
    doc.model_id = "old-model-aaaaaaaaaaaa"
    assert doc.check_gallery().status == "ok"


# --- the template key and the service's credential ------------------------------------------
def sealed(tmp_path: Path) -> Path:
    cfg = write_config(tmp_path)
    enroll(tmp_path / "state" / "gallery.db", tmp_path / "gallery.key")
    return cfg


def key_check(cfg: Path, tmp_path: Path, **kw):
    doc = doctor_for(cfg, tmp_path, **kw)
    doc.model_id = MODEL
    assert doc.check_gallery().status == "ok"
    return doc.check_key()


def test_the_key_found_is_the_one_the_gallery_was_sealed_with(tmp_path):
    c = key_check(sealed(tmp_path), tmp_path)
    assert c.status == "ok" and "sealed with key" in c.message


def test_a_missing_key_file_fails_with_restore_or_import(tmp_path):
    cfg = sealed(tmp_path)
    (tmp_path / "gallery.key").unlink()
    c = key_check(cfg, tmp_path)
    assert c.status == "fail" and "no key file" in c.message and str(tmp_path / "gallery.key") in c.message
    assert "restore" in c.fix and "facegate gallery import" in c.fix


def test_another_key_fails(tmp_path):
    cfg = sealed(tmp_path)
    (tmp_path / "gallery.key").unlink()
    create_key(tmp_path / "gallery.key")
    c = key_check(cfg, tmp_path)
    assert c.status == "fail" and "but the gallery is sealed with" in c.message and "backup" in c.fix


def test_a_key_file_others_can_read_fails_with_chmod(tmp_path):
    cfg = sealed(tmp_path)
    os.chmod(tmp_path / "gallery.key", 0o644)
    c = key_check(cfg, tmp_path)
    assert c.status == "fail" and c.fix == f"chmod 600 {tmp_path / 'gallery.key'}"


def test_a_unit_whose_credential_source_is_missing_would_not_start(tmp_path):
    cfg = sealed(tmp_path)
    service = tmp_path / "facegate.service"
    service.write_text(f"[Service]\nLoadCredential=facegate-gallery-key:{tmp_path / 'etc-gallery.key'}\n")
    c = key_check(cfg, tmp_path, unit_paths=(service,))
    assert c.status == "fail" and "243/CREDENTIALS" in c.message and str(tmp_path / "etc-gallery.key") in c.message
    assert "install -m 0600" in c.fix
    (tmp_path / "etc-gallery.key").write_bytes((tmp_path / "gallery.key").read_bytes())
    assert key_check(cfg, tmp_path, unit_paths=(service,)).status == "ok"
    (tmp_path / "etc-gallery.key").unlink()
    create_key(tmp_path / "etc-gallery.key")  # a drop-in may point elsewhere; this one is simply wrong
    c = key_check(cfg, tmp_path, unit_paths=(service,))
    assert c.status == "fail" and "the service would get key" in c.message


def test_unit_drop_ins_override_the_credential_and_config(tmp_path):
    service = tmp_path / "facegate.service"
    service.write_text("[Service]\nExecStart=/x/facegate run --config /etc/facegate/facegate.toml\n"
                       "LoadCredential=facegate-gallery-key:/etc/facegate/gallery.key\n")
    (tmp_path / "facegate.service.d").mkdir()
    (tmp_path / "facegate.service.d" / "key.conf").write_text(
        "[Service]\nLoadCredentialEncrypted=facegate-gallery-key:/etc/credstore.encrypted/k\n")
    u = unit.read_unit((tmp_path / "missing.service", service))
    assert u.config == Path("/etc/facegate/facegate.toml")
    assert u.key_source == Path("/etc/credstore.encrypted/k") and u.key_encrypted


# --- camera --------------------------------------------------------------------------------
@pytest.fixture()
def fake_camera(tmp_path, monkeypatch):
    dev = tmp_path / "dev"
    dev.mkdir()
    node = dev / "video0"
    node.write_bytes(b"")
    os.chmod(node, 0o660)
    monkeypatch.setattr(devices, "CAMERA_GLOBS", (str(dev / "video*"),))
    return node


def test_a_camera_held_by_another_process_is_named_with_its_pid(tmp_path, fake_camera, monkeypatch):
    proc = tmp_path / "proc" / "4242"
    (proc / "fd").mkdir(parents=True)
    (proc / "fd" / "7").symlink_to(fake_camera)
    (proc / "comm").write_text("rpicam-hello\n")
    monkeypatch.setattr(devices, "PROC", tmp_path / "proc")
    cfg = write_config(tmp_path, f'[camera]\ntype = "opencv"\ndevice = "{fake_camera}"')
    c = doctor_for(cfg, tmp_path).check_camera()
    assert c.status == "fail" and c.message.startswith("camera busy: rpicam-hello (pid 4242) holds")
    assert "kill 4242" in c.fix


def test_device_holders_reads_the_real_proc(fake_camera):
    with open(fake_camera, "rb") as fh:
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=fh)
    try:
        holders = devices.device_holders([str(fake_camera)])
        assert [h.pid for h in holders] == [child.pid] and holders[0].device == str(fake_camera)
    finally:
        child.kill()
        child.wait()


def test_a_camera_this_user_may_not_open_says_which_group(tmp_path, fake_camera):
    cfg = write_config(tmp_path, f'[camera]\ntype = "opencv"\ndevice = "{fake_camera}"')
    c = doctor_for(cfg, tmp_path, identity=PI).check_camera()
    group = devices.group_of(str(fake_camera))
    assert c.status == "fail" and "pi cannot open the camera" in c.message and str(fake_camera) in c.message
    assert c.fix.startswith(f"sudo usermod -aG {group} pi")


def test_a_camera_that_does_not_open_says_how_to_look(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "CAMERA_GLOBS", ())
    cfg = write_config(tmp_path, '[camera]\ntype = "opencv"\ndevice = "/dev/no-such-camera"')
    c = doctor_for(cfg, tmp_path).check_camera()
    assert c.status == "fail" and "rpicam-hello --list-cameras" in c.fix


# --- GPIO ----------------------------------------------------------------------------------
@pytest.fixture()
def fake_chip(tmp_path, monkeypatch):
    pytest.importorskip("gpiozero")
    chip = tmp_path / "gpiochip0"
    chip.write_bytes(b"")
    os.chmod(chip, 0o660)
    monkeypatch.setattr(devices, "GPIO_GLOB", str(tmp_path / "gpiochip*"))
    return chip


def test_gpio_permission_names_the_group_to_join(tmp_path, fake_chip):
    cfg = write_config(tmp_path)
    c = doctor_for(cfg, tmp_path, identity=PI).check_gpio()
    group = devices.group_of(str(fake_chip))
    assert c.status == "fail" and "pi cannot open the GPIO chip" in c.message
    assert c.fix.startswith(f"sudo usermod -aG {group} pi") and "SupplementaryGroups=gpio" in c.fix


def test_gpio_the_service_user_cannot_open_asks_for_a_udev_rule(tmp_path, fake_chip):
    cfg = write_config(tmp_path)
    owner = devices.Identity("me", os.stat(fake_chip).st_uid, frozenset())
    c = doctor_for(cfg, tmp_path, identity=owner, service_identity=PI).check_gpio()
    assert c.status == "fail" and "service user pi" in c.message and "udev" in c.fix
    assert doctor_for(cfg, tmp_path, identity=owner).check_gpio().status == "ok"


def test_no_gpio_chip_fails_and_the_log_lock_only_warns(tmp_path, monkeypatch):
    pytest.importorskip("gpiozero")
    monkeypatch.setattr(devices, "GPIO_GLOB", str(tmp_path / "gpiochip*"))
    c = doctor_for(write_config(tmp_path), tmp_path).check_gpio()
    assert c.status == "fail" and "no " in c.message and 'lock.type = "log"' in c.fix
    c = doctor_for(write_config(tmp_path, '[lock]\ntype = "log"'), tmp_path).check_gpio()
    assert c.status == "warn"


# --- clock ---------------------------------------------------------------------------------
@pytest.mark.parametrize("state, status, fix", [
    (ClockState(False, "timedatectl", ntp_enabled=False), "fail", "sudo timedatectl set-ntp true"),
    (ClockState(False, "timedatectl", ntp_enabled=True), "fail", "check the network"),
    (ClockState(False, "adjtimex"), "fail", "check the network"),
    (ClockState(True, "timedatectl", ntp_enabled=True), "ok", ""),
])
def test_the_clock_check_says_how_to_synchronise(tmp_path, monkeypatch, state, status, fix):
    monkeypatch.setattr(clock, "clock_state", lambda: state)
    c = doctor_for(write_config(tmp_path), tmp_path).check_clock()
    assert c.status == status and fix in c.fix and state.source in c.message


def test_an_unknown_clock_is_said_cleanly(tmp_path, monkeypatch):
    monkeypatch.setattr(clock, "timedatectl_state", lambda: None)
    monkeypatch.setattr(clock, "adjtimex_state", lambda: None)
    c = doctor_for(write_config(tmp_path), tmp_path).check_clock()
    assert c.status == "warn" and "unknown" in c.message


def test_the_kernel_clock_probe_answers_on_linux():
    state = clock.adjtimex_state()
    if sys.platform.startswith("linux"):
        assert state is not None and state.synchronised in (True, False)


# --- the command -----------------------------------------------------------------------------
def test_doctor_json_has_one_row_per_check_and_fails_the_exit_code(tmp_path, capsys):
    cfg = write_config(tmp_path, '[embedder]\nname = "no-such-model"\n[lock]\ntype = "log"')
    code = main(["doctor", "--config", str(cfg), "--json", "--no-camera"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == ["config", "model", "detector", "gallery", "key", "camera", "gpio",
                                         "clock", "service"]
    assert all(set(r) == {"name", "ok", "status", "message", "fix"} for r in rows)
    model = rows[1]
    assert code == 2 and model["ok"] is False and "no-such-model" in model["message"]


def test_diagnose_never_raises_on_a_broken_part(tmp_path, monkeypatch):
    def boom():
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(clock, "clock_state", boom)
    checks = {c.name: c for c in diagnose(write_config(tmp_path), camera=False,
                                          unit_paths=(tmp_path / "x.service",))}
    assert checks["clock"].status == "fail" and "probe exploded" in checks["clock"].message


def test_a_camera_held_by_the_running_door_service_only_warns(tmp_path, fake_camera, monkeypatch):
    proc = tmp_path / "proc" / "777"
    (proc / "fd").mkdir(parents=True)
    (proc / "fd" / "9").symlink_to(fake_camera)
    (proc / "comm").write_text("facegate\n")
    monkeypatch.setattr(devices, "PROC", tmp_path / "proc")
    cfg = write_config(tmp_path, f'[camera]\ntype = "opencv"\ndevice = "{fake_camera}"')
    c = doctor_for(cfg, tmp_path).check_camera()
    assert c.status == "warn" and "door service" in c.message and "systemctl stop facegate" in c.fix


def test_an_invalid_config_leaves_its_gallery_and_key_unchecked_rather_than_the_defaults(tmp_path):
    cfg = tmp_path / "facegate.toml"
    cfg.write_text("[storage]\ngallery = \"\"\n")
    doc = Doctor(ConfigChoice(cfg, "--config"), unit_paths=())
    assert doc.check_config().status == "fail"
    assert doc.check_gallery().message.startswith("not checked") and doc.check_key().message.startswith("not checked")
