"""Gallery: storage, schema, transactions and matching."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from facegate.edge import gallery as gallery_mod
from facegate.edge.gallery.crypto import TemplateCipher
from facegate.edge.errors import GalleryError, GalleryModelMismatch, GallerySchemaError, PersonNotFound
from facegate.edge.gallery import Gallery, match_matrix, schema_version
from facegate.edge.types import Embedding

DIM = 32
MODEL = "facenet-test-v1"


def unit(rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def emb(v: np.ndarray, model_id: str = MODEL) -> Embedding:
    return Embedding(vector=np.asarray(v, dtype=np.float32), model_id=model_id)


def near(rng: np.random.Generator, v: np.ndarray, noise: float = 0.05) -> Embedding:
    """Another 'photo' of the same face: v plus a little noise, renormalised."""
    w = v + noise * rng.standard_normal(v.shape[0]).astype(np.float32)
    return emb(w / np.linalg.norm(w))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def g():
    with Gallery(":memory:") as gal:
        yield gal


def template_count(gal: Gallery) -> int:
    return sum(p.templates for p in gal.people())


# --- enroll / remove / list ----------------------------------------------------------
def test_enroll_one_shot_and_several(g, rng):
    alice, bob = unit(rng), unit(rng)
    assert g.enroll("Alice", [emb(alice)]) == 1
    assert g.enroll("Bob", [near(rng, bob) for _ in range(3)], sources=["a.jpg", "b.jpg", None],
                    qualities=[0.9, None, 0.5]) == 3
    assert g.enroll("Alice", [near(rng, alice)]) == 1  # adds to the existing person
    assert len(g) == 2
    people = {p.name: p for p in g.people()}
    assert [p.name for p in g.people()] == ["Alice", "Bob"]
    assert people["Alice"].templates == 2 and people["Bob"].templates == 3
    assert people["Bob"].model_ids == (MODEL,)
    assert people["Alice"].created_at.tzinfo is not None
    assert g.model_ids() == {MODEL}
    names, matrix = g.templates(MODEL)
    assert names == ["Alice", "Alice", "Bob", "Bob", "Bob"]
    assert matrix.shape == (5, DIM) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix[0], alice, atol=1e-7)
    assert not matrix.flags.writeable
    assert "Alice" in g and " Alice " in g and "Carol" not in g


def test_remove(g, rng):
    g.enroll("Alice", [emb(unit(rng)), emb(unit(rng))])
    g.enroll("Bob", [emb(unit(rng))])
    assert g.remove("Alice") == 2
    assert [p.name for p in g.people()] == ["Bob"]
    assert g.templates(MODEL)[0] == ["Bob"]
    with pytest.raises(PersonNotFound, match="Alice"):
        g.remove("Alice")
    assert g.remove("Bob") == 1
    assert len(g) == 0 and g.model_ids() == set()


@pytest.mark.parametrize("bad", ["", "   ", "x" * 65, "Al\x00ice", "Al\nice", "Bob\u200b", 42])
def test_bad_names_refused(g, rng, bad):
    with pytest.raises(ValueError):
        g.enroll(bad, [emb(unit(rng))])
    assert len(g) == 0


def test_name_is_stripped(g, rng):
    g.enroll("  Alice ", [emb(unit(rng))])
    assert [p.name for p in g.people()] == ["Alice"]
    assert g.remove("Alice") == 1


# --- identify / verify ---------------------------------------------------------------
@pytest.fixture
def three(g, rng):
    faces = {n: unit(rng) for n in ("Alice", "Bob", "Carol")}
    for n, v in faces.items():
        g.enroll(n, [emb(v), near(rng, v), near(rng, v)])
    return faces


def test_identify_picks_right_person_with_runner_up(g, rng, three):
    for name, v in three.items():
        m = g.identify(near(rng, v), threshold=0.8)
        assert m.accepted and m.name == name == m.best_name
        assert m.candidates == 3 and m.model_id == MODEL and m.threshold == 0.8
        assert m.runner_up in set(three) - {name}
        assert m.margin is not None and m.margin > 0.5
        assert m.runner_up_distance > m.distance


def test_identify_distance_exact(g, rng, three):
    q = near(rng, three["Bob"])
    m = g.identify(q, threshold=0.8)
    names, matrix = g.templates(MODEL)
    d = np.linalg.norm(matrix.astype(np.float64) - q.vector, axis=1)
    per = {n: min(d[i] for i, k in enumerate(names) if k == n) for n in set(names)}
    order = sorted(per, key=per.get)
    assert (m.name, m.runner_up) == (order[0], order[1])
    assert m.distance == pytest.approx(per[order[0]], abs=1e-4)
    assert m.runner_up_distance == pytest.approx(per[order[1]], abs=1e-4)


def test_stranger_rejected(g, rng, three):
    m = g.identify(emb(unit(rng)), threshold=0.6)
    assert m.name is None and not m.accepted
    assert m.best_name in three and m.distance > 0.6


def test_identify_single_person_and_empty(g, rng):
    m = g.identify(emb(unit(rng)), threshold=1.0)
    assert m.name is None and m.distance == math.inf and m.candidates == 0 and m.best_name is None
    v = unit(rng)
    g.enroll("Alice", [emb(v)])
    m = g.identify(emb(v), threshold=0.5)
    assert m.name == "Alice" and m.distance < 1e-3 and m.runner_up is None and m.margin is None


def test_verify(g, rng, three):
    m = g.verify("Alice", near(rng, three["Alice"]), threshold=0.8)
    assert m.accepted and m.name == "Alice" and m.candidates == 1
    m = g.verify("Alice", near(rng, three["Bob"]), threshold=0.8)
    assert not m.accepted and m.best_name == "Alice" and m.distance > 0.8
    with pytest.raises(PersonNotFound):
        g.verify("Dave", near(rng, three["Alice"]), threshold=0.8)


def test_bad_threshold_and_query(g, rng, three):
    with pytest.raises(ValueError):
        g.identify(emb(unit(rng)), threshold=float("nan"))
    with pytest.raises(ValueError, match="dim"):
        g.identify(emb(unit(rng, DIM + 1)), threshold=0.8)
    with pytest.raises(ValueError, match="normalised"):
        g.identify(emb(2 * unit(rng)), threshold=0.8)


# --- model ids -----------------------------------------------------------------------
def test_mixing_models_refused_on_enroll(g, rng):
    g.enroll("Alice", [emb(unit(rng))])
    with pytest.raises(GalleryModelMismatch) as ei:
        g.enroll("Bob", [emb(unit(rng), "other-model")])
    assert MODEL in str(ei.value) and "other-model" in str(ei.value) and "re-enroll" in str(ei.value)
    with pytest.raises(GalleryModelMismatch):
        g.enroll("Bob", [emb(unit(rng)), emb(unit(rng), "other-model")])
    assert len(g) == 1 and template_count(g) == 1


def test_mixing_models_refused_on_identify_and_verify(g, rng):
    v = unit(rng)
    g.enroll("Alice", [emb(v)])
    with pytest.raises(GalleryModelMismatch, match="other-model"):
        g.identify(emb(v, "other-model"), threshold=0.8)
    with pytest.raises(GalleryModelMismatch):
        g.verify("Alice", emb(v, "other-model"), threshold=0.8)


# --- validation, all-or-nothing ------------------------------------------------------
@pytest.mark.parametrize(
    "make_bad",
    [
        lambda rng: emb(unit(rng) * 1.5),  # not normalised
        lambda rng: emb(np.full(DIM, np.nan, dtype=np.float32)),
        lambda rng: emb(np.r_[unit(rng)[:-1], np.inf].astype(np.float32)),
        lambda rng: emb(unit(rng, DIM + 3)),  # wrong dim within the batch
        lambda rng: emb(np.stack([unit(rng), unit(rng)])),  # 2-D
        lambda rng: Embedding(np.eye(DIM, dtype=np.int64)[0], MODEL),  # integer vector
        lambda rng: emb(unit(rng), ""),  # no model id
    ],
    ids=["unnormalised", "nan", "inf", "wrong-dim", "2d", "int", "no-model"],
)
def test_bad_embeddings_refused_nothing_written(g, rng, make_bad):
    g.enroll("Alice", [emb(unit(rng))])
    before = template_count(g)
    with pytest.raises(ValueError):
        g.enroll("Bob", [emb(unit(rng)), make_bad(rng)])
    with pytest.raises(ValueError):
        g.enroll("Alice", [make_bad(rng)])
    assert template_count(g) == before and [p.name for p in g.people()] == ["Alice"]


def test_wrong_dim_against_gallery_refused(g, rng):
    g.enroll("Alice", [emb(unit(rng))])
    with pytest.raises(ValueError, match="dim"):
        g.enroll("Bob", [emb(unit(rng, DIM * 2))])
    assert len(g) == 1


def test_failure_inside_transaction_rolls_back(g, rng, monkeypatch):
    g.enroll("Alice", [emb(unit(rng))])
    real, calls = TemplateCipher.seal, []

    def flaky(self, vector, aad):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(self, vector, aad)

    monkeypatch.setattr(TemplateCipher, "seal", flaky)
    with pytest.raises(RuntimeError):
        g.enroll("Bob", [emb(unit(rng)), emb(unit(rng))])
    assert [p.name for p in g.people()] == ["Alice"] and template_count(g) == 1


def test_mismatched_sources_length(g, rng):
    with pytest.raises(ValueError):
        g.enroll("Alice", [emb(unit(rng))], sources=["a.jpg", "b.jpg"])
    with pytest.raises(ValueError):
        g.enroll("Alice", [])
    assert len(g) == 0


# --- files, schema, lifecycle --------------------------------------------------------
def test_persistence_across_reopen(tmp_path, rng):
    path = tmp_path / "sub" / "dir" / "gallery.db"  # parent directories are created
    v = unit(rng)
    with Gallery(path) as g1:
        g1.enroll("Alice", [emb(v)], sources=["alice.jpg"], qualities=[0.7])
    with Gallery(path) as g2:
        assert [p.name for p in g2.people()] == ["Alice"]
        assert g2.identify(emb(v), threshold=0.5).name == "Alice"
    with Gallery(path, readonly=True) as ro:
        assert len(ro) == 1
        with pytest.raises(GalleryError, match="read-only"):
            ro.enroll("Bob", [emb(unit(rng))])
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT source, quality, dim, length(embedding) FROM templates").fetchone()
    assert row == ("alice.jpg", pytest.approx(0.7), DIM, 1 + 12 + 4 * DIM + 16)  # version, nonce, sealed, tag
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_schema_version_set(tmp_path):
    path = tmp_path / "g.db"
    Gallery(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version() == 4  # people, events, sealed templates, sealed decisions
    assert conn.execute("PRAGMA application_id").fetchone()[0] == gallery_mod.APPLICATION_ID
    conn.close()


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "g.db"
    Gallery(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(GallerySchemaError, match="99"):
        Gallery(path)


def test_migration_path(tmp_path, monkeypatch, rng):
    """A file is upgraded on open by a new migration; a failing one changes nothing."""
    v = schema_version()
    path = tmp_path / "g.db"
    with Gallery(path) as g:
        g.enroll("Alice", [emb(unit(rng))])

    def broken(conn):
        conn.execute("ALTER TABLE templates ADD COLUMN key_id2 TEXT")
        raise sqlite3.OperationalError("boom")

    monkeypatch.setitem(gallery_mod.MIGRATIONS, v, broken)
    with pytest.raises(GallerySchemaError, match=f"v{v} -> v{v + 1}"):
        Gallery(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == v
    assert "key_id2" not in [r[1] for r in conn.execute("PRAGMA table_info(templates)")]
    conn.close()

    monkeypatch.setitem(gallery_mod.MIGRATIONS, v, lambda c: c.execute("ALTER TABLE templates ADD COLUMN key_id2 TEXT"))
    with Gallery(path) as g:
        assert len(g) == 1 and g.templates(MODEL)[1].shape == (1, DIM)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == v + 1
    conn.close()


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(np.random.default_rng(0).bytes(8192))
    with pytest.raises(GalleryError, match="corrupt.db") as ei:
        Gallery(path)
    assert ei.value.__cause__ is None and not isinstance(ei.value, sqlite3.Error)


def test_foreign_sqlite_file_refused(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE stuff (x)")
    conn.commit()
    conn.close()
    with pytest.raises(GalleryError, match="not a facegate gallery"):
        Gallery(path)


def test_close_and_use_after_close(rng):
    g = Gallery(":memory:")
    assert not g.closed
    g.close()
    g.close()  # idempotent
    assert g.closed
    for call in (lambda: len(g), g.people, g.model_ids, lambda: g.enroll("A", [emb(unit(rng))]),
                 lambda: g.identify(emb(unit(rng)), 0.5), lambda: g.templates(MODEL), g.reload):
        with pytest.raises(GalleryError, match="closed"):
            call()


def test_second_connection_sees_writes(tmp_path, rng):
    path = tmp_path / "g.db"
    a, b = unit(rng), unit(rng)
    with Gallery(path) as writer, Gallery(path) as reader:
        writer.enroll("Alice", [emb(a)])
        assert reader.identify(emb(b), threshold=0.5).name is None  # caches Alice only
        writer.enroll("Bob", [emb(b)])
        assert reader.identify(emb(b), threshold=0.5).name == "Bob"
        writer.remove("Alice")
        assert reader.identify(emb(a), threshold=0.5).best_name == "Bob"
        assert reader.templates(MODEL)[0] == ["Bob"]
        reader.reload()
        assert len(reader) == 1


# --- match_matrix -----------------------------------------------------------------------
def test_match_matrix_matches_brute_force(rng):
    q = rng.standard_normal((7, 64))
    t = rng.standard_normal((300, 64))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    brute = np.linalg.norm(q[:, None, :] - t[None, :, :], axis=2)
    np.testing.assert_allclose(match_matrix(q, t), brute, atol=1e-9)
    got32 = Gallery.match_matrix(q.astype(np.float32), t.astype(np.float32))
    assert got32.dtype == np.float32 and got32.shape == (7, 300)
    np.testing.assert_allclose(got32, brute, atol=2e-3)
    assert match_matrix(q[0], t).shape == (1, 300)
    assert match_matrix(q, t[:0]).shape == (7, 0)
    with pytest.raises(ValueError):
        match_matrix(q, t[:, :10])


def test_identify_many_templates_loads_them_once(rng):
    """10,000 templates of 2,000 people: decoded into one matrix once, then every identify reuses it.

    (How fast that is, is the benchmark's business: ``facegate bench``.)"""
    dim, people, per = 128, 2000, 5
    base = rng.standard_normal((people, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    with Gallery(":memory:") as g:
        for i in range(people):
            g.enroll(f"p{i:04d}", [emb(base[i], MODEL)] * per)
        g.identify(emb(base[0]), 0.5)  # load the cache
        block = g._blocks[MODEL]
        for i in range(0, people, 100):
            assert g.identify(emb(base[i]), 0.5).name == f"p{i:04d}"
        assert g._blocks[MODEL] is block  # not decoded again


def test_damaged_template_row_reported(tmp_path, rng):
    path = tmp_path / "g.db"
    with Gallery(path) as g:
        g.enroll("Alice", [emb(unit(rng))])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE templates SET embedding = x'00010203'")
    conn.commit()
    conn.close()
    with Gallery(path) as g, pytest.raises(GalleryError, match="wrong size or format"):
        g.identify(emb(unit(rng)), 0.5)
