"""`facegate run` and `facegate doctor` from a config file, as the service starts them."""

import json
import logging

import pytest

from facegate.edge.cli import main
from facegate.edge.eval.samples import portrait_path
from facegate.edge.demo.scenario import Shot, render_shots, write_scenario



@pytest.fixture()
def installation(tmp_path):
    frames = render_shots([Shot(None, 3, "empty"), Shot("astronaut", 14, "visit", face_px=(130.0, 160.0)),
                           Shot(None, 3, "empty")], seed=7)
    write_scenario(frames, tmp_path / "frames")
    gallery = tmp_path / "state" / "gallery.db"
    cfg = tmp_path / "facegate.toml"
    cfg.write_text(f"""
[camera]
type = "replay"
path = "{tmp_path / 'frames'}"
fps = 15.0

[lock]
type = "log"
unlock_seconds = 0.2

[storage]
gallery = "{gallery}"

[daemon]
watchdog = false

[liveness]
enabled = false  # the replayed frames are pastes of one portrait: planar, as a photo
""")
    return cfg, gallery


def test_run_judges_a_replay_and_records_the_grant_in_the_audit_log(installation, capsys, caplog):
    cfg, gallery = installation
    assert main(["enroll", "eileen", str(portrait_path("astronaut")), "--gallery", str(gallery)]) == 0
    with caplog.at_level(logging.INFO, logger="facegate"):
        assert main(["run", "--config", str(cfg)]) == 0
    from facegate.edge.audit import AuditLog

    with AuditLog(gallery) as audit:
        events = audit.recent(10)
    assert [e.outcome for e in events] == ["grant"] and events[0].name == "eileen"
    assert any("unlocked" in r.getMessage().lower() for r in caplog.records)


def test_run_with_a_broken_config_names_the_key(tmp_path, capsys):
    bad = tmp_path / "facegate.toml"
    bad.write_text("[lock]\npin = 99\n")
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "lock.pin" in err and "99" in err and len(err.strip().splitlines()) == 1


def test_doctor_reports_each_part_and_fails_on_a_missing_camera(installation, capsys):
    cfg, gallery = installation
    cfg.write_text(cfg.read_text().replace('type = "replay"', 'type = "opencv"\ndevice = "/dev/no-such-camera"'))
    code = main(["doctor", "--config", str(cfg), "--json"])
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert code == 2
    assert rows["config"]["status"] == "ok" and rows["model"]["status"] == "ok"
    assert rows["gallery"]["status"] == "warn"  # not created yet: says to enroll
    assert rows["camera"]["status"] == "fail"
    assert rows["gpio"]["status"] == "warn"  # the log lock drives no relay


def test_face_images_are_kept_only_when_turned_on(installation, tmp_path):
    cfg, gallery = installation
    assert main(["enroll", "eileen", str(portrait_path("astronaut")), "--gallery", str(gallery)]) == 0
    assert main(["run", "--config", str(cfg)]) == 0
    assert not (gallery.parent / "faces").exists()
    cfg.write_text(cfg.read_text().replace("[storage]", "[storage]\nsave_face_images = true"))
    assert main(["run", "--config", str(cfg)]) == 0
    saved = sorted(p.name for p in (gallery.parent / "faces").glob("*.jpg"))
    assert saved and all(name.endswith(("-grant.jpg", "-deny.jpg")) for name in saved)
