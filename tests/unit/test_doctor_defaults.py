"""One gallery for the CLI, `facegate doctor` and the daemon: the CLI follows the config the daemon reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from facegate.edge.cli import defaults
from facegate.edge.cli.main import main
from facegate.edge.config import Config
from facegate.edge.doctor import Doctor
from facegate.edge.errors import BackendUnavailable


@pytest.fixture()
def door(tmp_path, monkeypatch):
    """A system config at a temp path standing for /etc/facegate/facegate.toml."""
    gallery = tmp_path / "var-lib-facegate" / "gallery.db"
    system = tmp_path / "etc-facegate" / "facegate.toml"
    system.parent.mkdir()
    system.write_text(f'[storage]\ngallery = "{gallery}"\nkey_file = "{tmp_path / "gallery.key"}"\n')
    monkeypatch.setattr(defaults, "SYSTEM_CONFIG", system)
    monkeypatch.setenv("FACEGATE_GALLERY", str(tmp_path / "home" / "gallery.db"))  # what a desk would use
    return system, gallery


def test_the_config_is_chosen_as_documented(tmp_path, door):
    system, _ = door
    given = tmp_path / "given.toml"
    assert defaults.choose_config(given, env={}) == defaults.ConfigChoice(given, "--config")
    assert defaults.choose_config(None, env={"FACEGATE_CONFIG": str(given)}).path == given
    assert defaults.choose_config(None, env={}) == defaults.ConfigChoice(system, "system")
    system.unlink()
    assert defaults.choose_config(None, env={}) == defaults.ConfigChoice(None, "none")


def test_the_daemon_reads_the_same_config_as_the_cli(tmp_path, door):
    system, _ = door
    assert defaults.daemon_config(None, env={}) == system == defaults.choose_config(None, env={}).path
    env = {"FACEGATE_CONFIG": str(tmp_path / "x.toml")}
    assert defaults.daemon_config(None, env=env) == defaults.choose_config(None, env=env).path


def test_an_unreadable_system_config_is_a_clear_refusal_not_another_gallery(door, monkeypatch, capsys):
    system, _ = door
    monkeypatch.setattr(defaults, "_readable", lambda path: False)
    assert defaults.choose_config(None, env={}) == defaults.ConfigChoice(None, "system", unreadable=system)
    assert main(["list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(system) in err and "sudo" in err and "--gallery" in err


def test_an_explicit_gallery_still_wins(tmp_path, door, capsys):
    other = tmp_path / "other.db"
    assert main(["list", "--gallery", str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"people": []}


def test_enroll_writes_where_the_daemon_and_doctor_read_and_says_where(door, capsys):
    from facegate.edge.eval.samples import portrait_path

    _, gallery = door
    try:
        photo = str(portrait_path("astronaut"))
    except BackendUnavailable as exc:  # the demo's portraits are an extra
        pytest.skip(str(exc))
    assert main(["enroll", "eileen", photo]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(f"in {gallery}")
    assert gallery.exists() and not Path(defaults.user_gallery()).exists()
    assert Path(Config.load(defaults.daemon_config(None)).storage.gallery) == gallery  # what `facegate run` opens
    doc = Doctor(defaults.choose_config(None), unit_paths=())
    assert doc.check_config().status == "ok" and doc.gallery_path == gallery
    assert main(["list", "--json"]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)["people"]] == ["eileen"]


def test_without_any_config_the_desk_gallery_is_used(tmp_path, door, capsys):
    system, _ = door
    system.unlink()
    assert main(["list"]) == 0
    assert str(tmp_path / "home" / "gallery.db") in capsys.readouterr().out
