"""The calibrated threshold goes into the door's config atomically, and the old value stays readable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest

from facegate.edge.calibrate.configfile import write_match
from facegate.edge.config import Config
from facegate.edge.errors import ConfigError

WHEN = datetime(2026, 11, 30, 1, 2, tzinfo=timezone.utc)
DOOR = """\
# the front door
[lock]
pin = 17

[match]
threshold = 0.9  # from the bundle's card

[storage]
gallery = "/var/lib/facegate/gallery.db"
"""


def test_the_threshold_is_replaced_and_the_old_line_kept_as_a_comment(tmp_path):
    path = tmp_path / "facegate.toml"
    path.write_text(DOOR)
    os.chmod(path, 0o640)
    update = write_match(path, 0.8123, 0.05, now=WHEN)
    assert update.previous_threshold == 0.9 and update.previous_margin is None
    cfg = Config.load(path)
    assert cfg.match.threshold == 0.8123 and cfg.match.margin == 0.05 and cfg.lock.pin == 17
    text = path.read_text()
    assert "# facegate calibrate 2026-11-30 01:02 UTC: was threshold = 0.9  # from the bundle's card" in text
    assert text.startswith("# the front door\n")  # the user's comments stay
    assert (path.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["facegate.toml"]  # no temporary left behind
    # a second calibration keeps the history
    assert write_match(path, 0.8, now=WHEN).previous_threshold == 0.8123
    assert Config.load(path).match.threshold == 0.8 and "was threshold = 0.8123" in path.read_text()


def test_a_config_without_a_match_table_gets_one(tmp_path):
    path = tmp_path / "facegate.toml"
    path.write_text("[lock]\npin = 22\n")
    assert write_match(path, 0.85, now=WHEN).previous_threshold is None
    cfg = Config.load(path)
    assert cfg.match.threshold == 0.85 and cfg.lock.pin == 22


def test_a_broken_config_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "facegate.toml"
    path.write_text("[match]\nthreshhold = 0.9\n")
    with pytest.raises(ConfigError, match="threshhold"):
        write_match(path, 0.8)
    assert path.read_text() == "[match]\nthreshhold = 0.9\n"


def test_a_value_the_config_would_refuse_is_not_written(tmp_path):
    path = tmp_path / "facegate.toml"
    path.write_text(DOOR)
    with pytest.raises(ConfigError, match="by hand"):
        write_match(path, 2.5)
    assert path.read_text() == DOOR


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_kill_between_write_and_rename_leaves_the_old_config(tmp_path):
    """The writer is killed (SIGKILL, no cleanup) after the new text is on disk but before the rename."""
    path = tmp_path / "facegate.toml"
    path.write_text(DOOR)
    script = textwrap.dedent(f"""
        import os, signal
        from facegate.edge.calibrate.configfile import write_match
        def killed(src, dst):
            assert open(src).read().count("threshold = 0.7") == 1  # the whole new file was written
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace = killed
        write_match({str(path)!r}, 0.7)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ}, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert path.read_text() == DOOR
    assert Config.load(path).match.threshold == 0.9
    # the half-done temporary is a separate hidden file, never the config itself
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "facegate.toml"]
    assert all(n.startswith(".facegate.toml.") and n.endswith(".tmp") for n in leftovers)
    # and the next calibration succeeds
    write_match(path, 0.7)
    assert Config.load(path).match.threshold == 0.7
