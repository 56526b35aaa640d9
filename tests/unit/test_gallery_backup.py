"""facegate gallery export / import: encrypted, versioned backups that survive the device's key."""

from __future__ import annotations

import json
import os
import stat
import struct

import numpy as np
import pytest

from facegate.edge.cli.main import main
from facegate.edge.errors import BackupError, GalleryInputError, GalleryModelMismatch
from facegate.edge.gallery import Gallery
from facegate.edge.gallery.backup import MAGIC, backup_header, read_backup, write_backup
from facegate.edge.gallery.keys import default_key_path
from facegate.edge.types import Embedding

PASS = "correct horse battery staple"
MODEL = "model-a"


def vec(seed: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("FACEGATE_BACKUP_PASSPHRASE", raising=False)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "pi" / "g.db"
    with Gallery(path) as g:
        g.enroll("Alice", [Embedding(vec(1), MODEL), Embedding(vec(2), MODEL)], sources=["a.jpg", None],
                 qualities=[55.0, None], note="front door")
        g.enroll("Bob", [Embedding(vec(3), MODEL)])
    return path


@pytest.fixture
def passfile(tmp_path):
    p = tmp_path / "pass.txt"
    p.write_text(PASS + "\n")
    return p


def test_export_import_round_trip_through_the_cli_onto_a_new_device(tmp_path, source, passfile, capsys):
    backup = tmp_path / "backup.fgb"
    old = os.umask(0)
    try:
        assert main(["gallery", "export", str(backup), "--gallery", str(source),
                     "--passphrase-file", str(passfile), "--json"]) == 0
    finally:
        os.umask(old)
    out = json.loads(capsys.readouterr().out)
    assert out == {"file": str(backup), "version": 1, "model_ids": [MODEL], "people": 2, "templates": 3}
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    data = backup.read_bytes()
    assert data.startswith(MAGIC) and b"Alice" not in data and vec(1).tobytes() not in data

    # the SD card died: a new device, a new key, the backup and its passphrase
    target = tmp_path / "new" / "g.db"
    assert main(["gallery", "import", str(backup), "--gallery", str(target), "--passphrase-file", str(passfile)]) == 0
    assert "imported 2 people, 3 template(s)" in capsys.readouterr().out
    with Gallery(source, readonly=True) as a, Gallery(target) as b:
        assert a.key_id != b.key_id  # re-sealed with the new device's own key
        assert [(p.name, p.templates, p.note) for p in a.people()] == [(p.name, p.templates, p.note) for p in b.people()]
        np.testing.assert_array_equal(a.templates(MODEL)[1], b.templates(MODEL)[1])
        assert b.identify(Embedding(vec(3), MODEL), 0.1).name == "Bob"


def test_wrong_passphrase_and_tampering_are_one_clear_error_and_write_nothing(tmp_path, source):
    backup = tmp_path / "b.fgb"
    with Gallery(source, readonly=True) as g:
        write_backup(backup, g.export_people(), PASS)
    with pytest.raises(BackupError, match="wrong passphrase"):
        read_backup(backup, "not the passphrase at all")
    data = bytearray(backup.read_bytes())
    data[-5] ^= 1
    (tmp_path / "t.fgb").write_bytes(bytes(data))
    with pytest.raises(BackupError, match="changed"):
        read_backup(tmp_path / "t.fgb", PASS)
    # the header is authenticated too: claiming another model is detected
    n = struct.unpack(">I", backup.read_bytes()[len(MAGIC):len(MAGIC) + 4])[0]
    head = backup.read_bytes()[len(MAGIC) + 4:len(MAGIC) + 4 + n].replace(b"model-a", b"model-b")
    (tmp_path / "h.fgb").write_bytes(MAGIC + struct.pack(">I", len(head)) + head
                                     + backup.read_bytes()[len(MAGIC) + 4 + n:])
    with pytest.raises(BackupError):
        read_backup(tmp_path / "h.fgb", PASS)


def test_cli_import_with_a_wrong_passphrase_leaves_the_gallery_alone(tmp_path, source, passfile, capsys):
    backup = tmp_path / "b.fgb"
    assert main(["gallery", "export", str(backup), "--gallery", str(source), "--passphrase-file", str(passfile)]) == 0
    target = tmp_path / "t.db"
    with Gallery(target) as g:
        g.enroll("Carol", [Embedding(vec(9), MODEL)])
    before = target.read_bytes()
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("a different passphrase\n")
    capsys.readouterr()
    assert main(["gallery", "import", str(backup), "--gallery", str(target), "--passphrase-file", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wrong passphrase" in err and "Traceback" not in err
    assert target.read_bytes() == before


def test_a_newer_format_version_is_refused_by_name(tmp_path):
    head = json.dumps({"format": "facegate-gallery-backup", "version": 99}).encode()
    path = tmp_path / "future.fgb"
    path.write_bytes(MAGIC + struct.pack(">I", len(head)) + head + b"\0" * 32)
    with pytest.raises(BackupError, match="v99 is newer"):
        backup_header(path)
    for junk in (b"", b"PK\x03\x04 a zip file", MAGIC + b"\xff\xff\xff\xff"):
        path.write_bytes(junk)
        with pytest.raises(BackupError):
            read_backup(path, PASS)


def test_model_id_is_checked_on_import(tmp_path, source):
    backup = tmp_path / "b.fgb"
    with Gallery(source, readonly=True) as g:
        write_backup(backup, g.export_people(), PASS)
    _, people = read_backup(backup, PASS)
    with Gallery(tmp_path / "other.db") as other:
        other.enroll("Dave", [Embedding(vec(5, 8), "model-b")])
        with pytest.raises(GalleryModelMismatch, match="model-b"):
            other.import_people(people)
        assert [p.name for p in other.people()] == ["Dave"]


def test_import_refuses_people_already_enrolled_and_keeps_everything_as_it_was(tmp_path, source):
    backup = tmp_path / "b.fgb"
    with Gallery(source, readonly=True) as g:
        write_backup(backup, g.export_people(), PASS)
    _, people = read_backup(backup, PASS)
    with Gallery(tmp_path / "t.db") as t:
        t.enroll("Bob", [Embedding(vec(7), MODEL)])
        with pytest.raises(GalleryInputError, match="already enrolled: 'Bob'"):
            t.import_people(people)
        assert {p.name: p.templates for p in t.people()} == {"Bob": 1}


def test_short_passphrases_and_overwrites_are_refused(tmp_path, source):
    with Gallery(source, readonly=True) as g:
        people = g.export_people()
    with pytest.raises(BackupError, match="at least 12"):
        write_backup(tmp_path / "b.fgb", people, "short")
    write_backup(tmp_path / "b.fgb", people, PASS)
    with pytest.raises(BackupError, match="already exists"):
        write_backup(tmp_path / "b.fgb", people, PASS)


def test_gallery_info_encrypt_and_newkey(tmp_path, source, capsys):
    assert main(["gallery", "info", "--gallery", str(source), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["people"] == 2 and info["model_ids"] == [MODEL] and len(info["key_id"]) == 16
    key = tmp_path / "etc" / "gallery.key"
    assert main(["gallery", "newkey", str(key)]) == 0
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert main(["gallery", "newkey", str(key)]) == 2  # never replaced
    assert "already exists" in capsys.readouterr().err
    assert default_key_path(source).exists()


def test_import_checks_the_doors_model_before_asking_for_the_passphrase(tmp_path, source, passfile, capsys):
    """With --config the backup must hold templates of the door's own embedder."""
    backup = tmp_path / "b.fgb"
    assert main(["gallery", "export", str(backup), "--gallery", str(source), "--passphrase-file", str(passfile)]) == 0
    cfg = tmp_path / "facegate.toml"
    target = tmp_path / "t.db"
    cfg.write_text(f'[storage]\ngallery = "{target}"\n')
    capsys.readouterr()
    assert main(["gallery", "import", str(backup), "--config", str(cfg)]) == 2  # no passphrase given: not reached
    err = capsys.readouterr().err
    assert "model-a" in err and "the door uses" in err and not target.exists()
