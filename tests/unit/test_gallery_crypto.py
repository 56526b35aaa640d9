"""Templates at rest: sealed with AES-GCM, bound to their row, private files, keys, migration, removal."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from facegate.edge.errors import GalleryKeyError, GalleryTampered
from facegate.edge.gallery import MIGRATIONS, Gallery, encode_embedding
from facegate.edge.gallery.crypto import TemplateCipher
from facegate.edge.gallery.keys import CREDENTIAL_NAME, create_key, default_key_path
from facegate.edge.types import Embedding

DIM = 16
MODEL = "test-model-0123"


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def emb(v: np.ndarray, model: str = MODEL) -> Embedding:
    return Embedding(np.asarray(v, np.float32), model)


def file_bytes(path: Path) -> bytes:
    """Everything SQLite keeps of the gallery on disk: the file and its WAL."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def test_templates_are_not_in_the_file_in_clear(tmp_path):
    path = tmp_path / "g.db"
    v = unit(1)
    with Gallery(path) as g:
        g.enroll("Alice", [emb(v)])
        assert g.identify(emb(v), 0.1).name == "Alice"
    assert v.astype("<f4").tobytes() not in file_bytes(path)
    assert v.astype("<f4").tobytes()[:16] not in file_bytes(path)
    with sqlite3.connect(path) as conn:
        (key_id,) = conn.execute("SELECT key_id FROM templates").fetchone()
    assert key_id == Gallery(path).key_id and len(key_id) == 16


def test_key_created_at_first_enrollment_and_files_private_under_umask_000(tmp_path):
    path = tmp_path / "state" / "g.db"
    key = default_key_path(path)
    with umask(0):
        with Gallery(path) as g:
            assert not key.exists()  # an empty gallery needs no key
            g.enroll("Alice", [emb(unit(1))])
            assert key.exists()
            for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), key):
                assert mode(f) == 0o600, f
    assert len(bytes.fromhex(key.read_text().strip())) == 32


def test_group_readable_files_are_0640_under_umask_000(tmp_path):
    from facegate.edge.audit import AuditLog

    path = tmp_path / "g.db"
    with umask(0), Gallery(path, file_mode=0o640) as g:
        g.enroll("Alice", [emb(unit(1))])
        with AuditLog(path, file_mode=0o640, prune_interval_s=None):
            pass
        for f in (path, Path(f"{path}-wal"), default_key_path(path)):
            assert mode(f) == 0o640, f


def test_audit_log_file_private_under_umask_000(tmp_path):
    from facegate.edge.audit import AuditLog

    path = tmp_path / "audit.db"
    with umask(0), AuditLog(path, prune_interval_s=None):
        assert mode(path) == 0o600 and mode(Path(f"{path}-wal")) == 0o600


def test_an_existing_world_readable_gallery_is_tightened(tmp_path, caplog):
    path = tmp_path / "g.db"
    Gallery(path).close()
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING), Gallery(path):
        assert mode(path) == 0o600
    assert "tightened" in caplog.text


def test_a_copied_gallery_is_useless_without_its_key(tmp_path):
    home, away = tmp_path / "pi", tmp_path / "elsewhere"
    home.mkdir(), away.mkdir()
    with Gallery(home / "g.db") as g:
        g.enroll("Alice", [emb(unit(1))])
    (away / "g.db").write_bytes((home / "g.db").read_bytes())
    before = (away / "g.db").read_bytes()
    with pytest.raises(GalleryKeyError, match="no key was found"):
        Gallery(away / "g.db")
    create_key(away / "g.key")  # another machine's key
    with pytest.raises(GalleryKeyError, match="wrong key"):
        Gallery(away / "g.db")
    with pytest.raises(GalleryKeyError, match="wrong key"):
        Gallery(away / "g.db", readonly=True)
    assert (away / "g.db").read_bytes() == before  # nothing overwritten


def test_the_systemd_credential_wins_over_the_key_file(tmp_path, monkeypatch):
    path = tmp_path / "g.db"
    with Gallery(path) as g:
        g.enroll("Alice", [emb(unit(1))])
    creds = tmp_path / "creds"
    creds.mkdir()
    default_key_path(path).rename(creds / CREDENTIAL_NAME)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with Gallery(path) as g:
        assert g.identify(emb(unit(1)), 0.1).name == "Alice"
        g.enroll("Bob", [emb(unit(2))])
    assert not default_key_path(path).exists()  # no second key made beside the gallery


def test_configured_key_file(tmp_path):
    path, key = tmp_path / "g.db", tmp_path / "etc" / "secret.key"
    with Gallery(path, key_file=key) as g:
        g.enroll("Alice", [emb(unit(1))])
    assert key.exists() and not default_key_path(path).exists()
    with pytest.raises(GalleryKeyError):
        Gallery(path)  # the default place has no key
    with Gallery(path, key_file=key, readonly=True) as g:
        assert g.verify("Alice", emb(unit(1)), 0.1).accepted


@pytest.mark.parametrize("content,file_mode,message", [
    (b"00" * 32 + b"\n", 0o644, "chmod 600"),
    (b"not hex at all\n", 0o600, "hex digits"),
    (b"ab" * 20, 0o600, "hex digits"),
])
def test_bad_key_files_are_one_clear_error(tmp_path, content, file_mode, message):
    path = tmp_path / "g.db"
    key = default_key_path(path)
    key.write_bytes(content)
    os.chmod(key, file_mode)
    with pytest.raises(GalleryKeyError, match=message):
        with Gallery(path) as g:
            g.enroll("Alice", [emb(unit(1))])


def test_rows_cannot_be_swapped_between_people(tmp_path):
    path = tmp_path / "g.db"
    with Gallery(path) as g:
        g.enroll("Alice", [emb(unit(1))])
        g.enroll("Mallory", [emb(unit(2))])
    with sqlite3.connect(path) as conn:  # give Mallory's face Alice's identity
        conn.execute("UPDATE templates SET person_id = 3 - person_id")
    with Gallery(path) as g, pytest.raises(GalleryTampered, match="failed authentication"):
        g.identify(emb(unit(2)), 0.1)


def test_blobs_cannot_be_swapped_between_rows_or_models(tmp_path):
    path = tmp_path / "g.db"
    with Gallery(path) as g:
        g.enroll("Alice", [emb(unit(1)), emb(unit(3))])
    with sqlite3.connect(path) as conn:
        a, b = conn.execute("SELECT embedding FROM templates ORDER BY id").fetchall()
        conn.execute("UPDATE templates SET embedding = ? WHERE id = 1", b)
        conn.execute("UPDATE templates SET embedding = ? WHERE id = 2", a)
    with Gallery(path) as g, pytest.raises(GalleryTampered):
        g.identify(emb(unit(1)), 0.1)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE templates SET embedding = ? WHERE id = 1", a)
        conn.execute("UPDATE templates SET embedding = ? WHERE id = 2", b)
        conn.execute("UPDATE templates SET model_id = 'other-model'")
    with Gallery(path) as g, pytest.raises(GalleryTampered):
        g.identify(emb(unit(1), "other-model"), 0.1)


def test_a_clear_text_row_slipped_into_an_encrypted_gallery_is_refused(tmp_path):
    path = tmp_path / "g.db"
    with Gallery(path) as g:
        g.enroll("Alice", [emb(unit(1))])
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO people (name, created_at) VALUES ('Mallory', '2024-01-01T00:00:00+00:00')")
        conn.execute("INSERT INTO templates (person_id, model_id, dim, embedding, created_at) "
                     "VALUES (2, ?, ?, ?, '2024-01-01')", (MODEL, DIM, unit(9).tobytes()))
    with pytest.raises(GalleryTampered, match="not encrypted"):
        Gallery(path)


# --- clear-text galleries of earlier versions ---------------------------------------------
def legacy_gallery(path: Path, people: dict[str, list[np.ndarray]]) -> None:
    """A gallery exactly as facegate wrote it before templates were sealed: schema v2
    (the same migration functions), float32 vectors in clear, a world-readable file."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for step in (0, 1):
        MIGRATIONS[step](conn)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("PRAGMA application_id = 1179083116")
    for name, vectors in people.items():
        pid = conn.execute("INSERT INTO people (name, created_at) VALUES (?, '2025-01-01T00:00:00+00:00')",
                           (name,)).lastrowid
        for v in vectors:
            cols = encode_embedding(v)  # the clear-text format of schema v2
            conn.execute("INSERT INTO templates (person_id, model_id, dim, embedding, created_at) "
                         "VALUES (?, ?, ?, ?, '2025-01-01')", (pid, MODEL, cols["dim"], cols["embedding"]))
    conn.close()
    os.chmod(path, 0o644)


def test_a_clear_text_gallery_is_encrypted_in_place(tmp_path):
    path = tmp_path / "g.db"
    vectors = {"Alice": [unit(1), unit(2)], "Bob": [unit(3)]}
    legacy_gallery(path, vectors)
    assert unit(1).tobytes() in file_bytes(path)
    with Gallery(path) as g:
        assert g.key_id is not None and len(g) == 2
        assert g.identify(emb(unit(2)), 0.1).name == "Alice" and g.identify(emb(unit(3)), 0.1).name == "Bob"
    assert mode(path) == 0o600 and mode(default_key_path(path)) == 0o600
    data = file_bytes(path)
    for v in (unit(1), unit(2), unit(3)):
        assert v.tobytes() not in data  # secure_delete + checkpoint: no clear copy left behind
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM templates WHERE key_id IS NULL").fetchone()[0] == 0


def test_the_migration_is_one_transaction(tmp_path, monkeypatch):
    path = tmp_path / "g.db"
    legacy_gallery(path, {"Alice": [unit(1), unit(2)], "Bob": [unit(3)]})
    real, calls = TemplateCipher.seal, []

    def fail_on_third(self, vector, aad):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("power cut")
        return real(self, vector, aad)

    monkeypatch.setattr(TemplateCipher, "seal", fail_on_third)
    with pytest.raises(OSError, match="power cut"):
        Gallery(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM templates WHERE key_id IS NULL").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM gallery_meta").fetchone()[0] == 0
    monkeypatch.undo()
    with Gallery(path) as g:  # the key made by the failed try is reused
        assert g.identify(emb(unit(3)), 0.1).name == "Bob"


def test_clear_text_gallery_with_a_key_kept_apart_needs_an_explicit_encrypt(tmp_path):
    path, key = tmp_path / "g.db", tmp_path / "etc" / "gallery.key"
    legacy_gallery(path, {"Alice": [unit(1)]})
    create_key(key)
    with pytest.raises(GalleryKeyError, match="facegate gallery encrypt"):
        Gallery(path, key_file=key)
    with Gallery(path, readonly=True, key_file=key) as g:  # still readable, with a warning
        assert g.identify(emb(unit(1)), 0.1).name == "Alice"
    with Gallery(path, key_file=key, encrypt_cleartext=True) as g:
        assert g.identify(emb(unit(1)), 0.1).name == "Alice"
    assert unit(1).tobytes() not in file_bytes(path)


# --- removal leaves no trace ------------------------------------------------------------
def test_cli_remove_leaves_no_trace_of_the_person_in_the_file(tmp_path, capsys):
    from facegate.edge.cli.main import main

    path = tmp_path / "g.db"
    with Gallery(path) as g:
        g.enroll("Zebulon Quixote", [emb(unit(i)) for i in range(1, 4)])
        g.enroll("Bob", [emb(unit(7))])
    with sqlite3.connect(path) as conn:
        blobs = {n: [r[0] for r in conn.execute(
            "SELECT embedding FROM templates t JOIN people p ON p.id = t.person_id WHERE p.name = ?", (n,))]
            for n in ("Zebulon Quixote", "Bob")}
    data = file_bytes(path)
    assert all(b in data for b in blobs["Zebulon Quixote"])  # the check below can fail
    assert main(["remove", "Zebulon Quixote", "--gallery", str(path)]) == 0
    assert "3 template(s)" in capsys.readouterr().out
    data = file_bytes(path)
    for blob in blobs["Zebulon Quixote"]:
        assert blob not in data and blob[13:29] not in data  # not even 16 bytes of ciphertext
    assert b"Zebulon" not in data
    assert all(b in data for b in blobs["Bob"])
    with Gallery(path) as g:
        assert [p.name for p in g.people()] == ["Bob"]


def test_two_creators_of_a_key_end_up_with_the_same_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "k" / "gallery.key"
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: create_key(path), range(16)))
    assert len({k.key for k in keys}) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["gallery.key"]  # no temporary left


def test_the_unit_passes_the_key_as_the_credential_the_gallery_reads():
    unit = Path(__file__).resolve().parents[2] / "systemd" / "facegate.service"
    lines = [ln.strip() for ln in unit.read_text().splitlines() if not ln.lstrip().startswith("#")]
    assert f"LoadCredential={CREDENTIAL_NAME}:/etc/facegate/gallery.key" in lines


def test_the_cli_uses_the_configs_key_file_and_mode(tmp_path, capsys):
    import json

    from facegate.edge.cli.main import main

    gallery, key = tmp_path / "state" / "g.db", tmp_path / "etc" / "gallery.key"
    cfg = tmp_path / "facegate.toml"
    cfg.write_text(f'[storage]\ngallery = "{gallery}"\nkey_file = "{key}"\ngroup_readable = true\n')
    with Gallery(gallery, key_file=key, file_mode=0o640) as g:
        g.enroll("Alice", [emb(unit(1))])
        g.enroll("Bob", [emb(unit(2))])
    assert main(["gallery", "info", "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["people"] == 2
    assert main(["remove", "Bob", "--config", str(cfg)]) == 0
    assert main(["list", "--gallery", str(gallery)]) == 2  # the default key place has no key
    assert "no key was found" in capsys.readouterr().err
    assert main(["list", "--gallery", str(gallery), "--key-file", str(key)]) == 0
    assert capsys.readouterr().out.startswith("Alice")
    assert mode(gallery) == 0o640
