"""Faults that need a real `facegate run` process: SIGHUP while it starts, SIGKILL while the door is open.

Real models, a real SQLite file, a replay camera and the logging lock; each
test starts the daemon as systemd would (``facegate run --config``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facegate.edge.config import Config
from facegate.edge.demo.scenario import Shot, render_shots, write_scenario
from facegate.edge.eval.samples import sample_portrait
from facegate.edge.gallery import Gallery
from facegate.edge.pipeline import create_pipeline
from facegate.edge.recognition import enroll


@pytest.fixture(scope="module")
def door(tmp_path_factory) -> Path:
    """A config, a gallery with Eileen enrolled by the door's model, and frames of her visit."""
    root = tmp_path_factory.mktemp("door")
    frames = render_shots([Shot(None, 3, "empty"), Shot("astronaut", 12, "Eileen", face_px=(130.0, 160.0))],
                          seed=5)
    write_scenario(frames, root / "frames")
    with Gallery(root / "gallery.db") as g:
        enroll(create_pipeline(Config.default()), g, "eileen", [sample_portrait("astronaut")])
    return root


def write_config(root: Path, name: str, *, loop: bool, unlock_seconds: float = 3.0) -> Path:
    cfg = root / name
    cfg.write_text(f'[camera]\ntype = "replay"\npath = "{root / "frames"}"\nloop = {str(loop).lower()}\n'
                   f'[lock]\ntype = "log"\nunlock_seconds = {unlock_seconds}\n'
                   f'[storage]\ngallery = "{root / "gallery.db"}"\n[daemon]\nwatchdog = false\n'
                   '[liveness]\nenabled = false\n')  # the replayed frames are a still photo: no head to see
    return cfg


def start(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import sys; from facegate.edge.cli.main import main; "
                             f"sys.exit(main(['run', '--config', {str(cfg)!r}]))"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    """stderr lines up to (and with) the first that holds ``text``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    pytest.fail(f"{text!r} never logged; got:\n{''.join(lines)}")


def test_sighup_while_the_models_load_is_a_reload_not_a_death(door):
    proc = start(write_config(door, "hup.toml", loop=False))
    try:
        wait_for(proc, "starting with")
        proc.send_signal(signal.SIGHUP)  # the models are loading now: SIGHUP's default would kill it
        rest = proc.stderr.read()
        rc = proc.wait(timeout=120)
    finally:
        proc.kill()
    assert rc == 0, rest
    assert "SIGHUP during start-up" in rest and "reloaded" in rest


def test_sigkill_while_the_door_is_open_leaves_the_grant_recorded_and_relock_locks(door):
    proc = start(write_config(door, "kill.toml", loop=True, unlock_seconds=30.0))
    try:
        wait_for(proc, "UNLOCKED")
        proc.send_signal(signal.SIGKILL)  # no handler, no finally: only what was done before counts
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
    with sqlite3.connect(door / "gallery.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        grants = db.execute("SELECT name FROM events WHERE outcome = 'grant'").fetchall()
    assert grants and grants[0][0] == "eileen"  # written before the door opened
    # what systemd runs next (ExecStopPost): the lock driven to locked, exit 0
    relock = subprocess.run([sys.executable, "-c", "import sys; from facegate.edge.cli.main import main; "
                             f"sys.exit(main(['relock', '--config', {str(door / 'kill.toml')!r}]))"],
                            capture_output=True, text=True, timeout=60)
    assert relock.returncode == 0 and "locked" in relock.stdout


def test_relock_drives_a_pin_left_high_by_a_dead_daemon_to_locked(tmp_path, mock_factory, capsys):
    """The GPIO line keeps its level when its owner dies; `facegate relock` (ExecStopPost) brings it down."""
    from facegate.edge.cli.main import main

    pin = mock_factory.pin(17)
    pin.function = "output"
    pin.state = True  # the relay energised: the door open, its process killed
    cfg = tmp_path / "facegate.toml"
    cfg.write_text('[lock]\ntype = "gpio"\npin = 17\n')
    assert main(["relock", "--config", str(cfg)]) == 0
    assert pin.state is False and "locked" in capsys.readouterr().out
