"""Calibrating a door end to end with fake stages: the guided camera session, feedback, the background set."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from facegate.edge.align import NO_QUALITY_GATE
from facegate.edge.audit import AuditLog, hold_embedding, mark_wrong
from facegate.edge.calibrate.background import BACKGROUND_FILE, load_background
from facegate.edge.calibrate.door import calibrate_door
from facegate.edge.calibrate.probes import capture_session
from facegate.edge.config import Config
from facegate.edge.errors import CalibrationError, ChecksumError, ModelError
from facegate.edge.pipeline import FacePipeline
from facegate.edge.types import Decision, Embedding
from facegate.models import bundles_dir
from tests.unit.test_daemon_loop import frame


@pytest.fixture
def pipeline(fake_detector, fake_embedder):
    return FacePipeline(fake_detector, fake_embedder, NO_QUALITY_GATE)


def test_the_camera_session_shows_progress_says_what_is_wrong_and_refuses_copies(pipeline, file_camera):
    out = io.StringIO()
    source = file_camera([frame(None), frame(1), frame(1), frame(1)], fps=None)
    with source:
        kept, reasons = capture_session(pipeline, source, "alice", frames=3, out=out, min_gap_s=0)
    assert len(kept) == 1  # the fake embedder gives one vector per person: the copies add nothing
    assert reasons == ["no face: stand in front of the camera", "hold on: move a little (a new angle)",
                       "hold on: move a little (a new angle)"]
    text = out.getvalue()
    assert "alice: look straight at the camera" in text and "[" in text and "1/3" in text


def test_the_camera_session_collects_the_frames_asked_for(pipeline, file_camera):
    with file_camera([frame(2)] * 6, fps=None) as source:
        kept, _ = capture_session(pipeline, source, "bob", frames=4, out=io.StringIO(), min_gap_s=0, min_change=0)
    assert kept.shape == (4, 4)


def _door(tmp_path, fake_embedder, key_file=None):
    from facegate.edge.gallery import Gallery

    cfg = Config.default()
    cfg = replace(cfg, storage=replace(cfg.storage, gallery=str(tmp_path / "g.db"), key_file=key_file))
    with Gallery(cfg.storage.gallery, key_file=key_file) as g:
        for who, name in ((1, "alice"), (2, "bob")):
            g.enroll(name, [Embedding(fake_embedder.vector_for(who), fake_embedder.model_id)])
    return cfg


@pytest.mark.parametrize("key_apart", [False, True], ids=["key beside the gallery", "key file of the config"])
def test_a_camera_calibration_of_a_door_with_marked_feedback(tmp_path, pipeline, fake_embedder, file_camera,
                                                             key_apart):
    cfg = _door(tmp_path, fake_embedder, key_file=str(tmp_path / "keys" / "door.key") if key_apart else None)
    from facegate.edge.gallery import Gallery

    with Gallery(cfg.storage.gallery, readonly=True, key_file=cfg.storage.key_file) as g:
        key = g.template_cipher()
    with AuditLog(cfg.storage.gallery) as log:  # a stranger let in as alice, marked wrong
        event = log.record(Decision(1.0, "grant", "alice", 0.4, 0.5, fake_embedder.model_id))
        hold_embedding(log, event, fake_embedder.vector_for(3), fake_embedder.model_id, key)
        mark_wrong(log, event, cipher=key)
    seen = []
    run = calibrate_door(cfg, cfg.storage.gallery, camera=True, frames=1, target_fmr=0.5, background=False,
                         pipeline=pipeline, source=file_camera([frame(1), frame(2)], fps=None),
                         out=io.StringIO(), wait=seen.append)
    assert seen == ["alice", "bob"]  # each person is asked in turn
    cal = run.calibration
    assert run.feedback_used == 1 and cal.impostor_sources["feedback"] == 2
    assert cal.choice.genuine_comparisons == 2 and cal.impostor_sources["household"] == 2
    assert [p.matched for p in cal.people] == [1, 1]
    assert cal.to_json()["impostor_comparisons"] == cal.choice.impostor_comparisons


def test_calibration_needs_people_and_probes(tmp_path, pipeline, fake_embedder):
    cfg = Config.default()
    with pytest.raises(CalibrationError, match="enroll the household first"):
        calibrate_door(cfg, tmp_path / "none.db", probes_dir=tmp_path, pipeline=pipeline)
    cfg = _door(tmp_path, fake_embedder)
    with pytest.raises(CalibrationError, match="--probes DIR"):
        calibrate_door(cfg, cfg.storage.gallery, background=False, pipeline=pipeline)


def test_probe_folders_of_people_not_enrolled_count_as_visitors(tmp_path, pipeline, fake_embedder):
    import cv2

    cfg = _door(tmp_path, fake_embedder)
    for who, name in ((1, "alice"), (2, "bob"), (3, "postman")):
        (tmp_path / "probes" / name).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "probes" / name / "1.png"), frame(who))
    (tmp_path / "probes" / "bob" / "blank.png").write_bytes(b"not an image")
    run = calibrate_door(cfg, cfg.storage.gallery, probes_dir=tmp_path / "probes", target_fmr=0.5,
                         background=False, pipeline=pipeline)
    assert run.calibration.impostor_sources["visitors"] == 2  # the postman against alice and bob
    assert run.calibration.choice.genuine_comparisons == 2
    assert len(run.probes.refused) == 1 and run.probes.refused[0][0].endswith("blank.png")


# --- the shipped background sets ------------------------------------------------------------
SHIPPED_WITH_BACKGROUND = [d.name for d in sorted(bundles_dir().iterdir())
                           if (d / "manifest.json").is_file() and "background" in json.loads(
                               (d / "manifest.json").read_text())]


def test_the_default_bundle_ships_a_background_set():
    assert "facegate-irn-onnx-int8" in SHIPPED_WITH_BACKGROUND


@pytest.mark.parametrize("name", SHIPPED_WITH_BACKGROUND)
def test_each_shipped_background_set_is_small_checked_and_of_its_own_model(name):
    folder = bundles_dir() / name
    entry = json.loads((folder / "manifest.json").read_text())["background"]
    assert (folder / entry["file"]).stat().st_size < 4_000_000
    bg = load_background(folder, entry["model_id"])
    assert len(bg) == entry["embeddings"] and bg.people == entry["people"] >= 2000
    assert np.allclose(np.linalg.norm(bg.vectors, axis=1), 1.0, atol=1e-5)
    assert entry["built_by"] == f"facegate calibrate background --embedder {name}"


def test_a_tampered_or_foreign_background_set_is_refused(tmp_path):
    src = bundles_dir() / "facegate-irn-onnx-int8"
    folder = tmp_path / "bundle"
    folder.mkdir()
    shutil.copy(src / "manifest.json", folder)
    shutil.copy(src / BACKGROUND_FILE, folder)
    with pytest.raises(ModelError, match="not other-model"):
        load_background(folder, "other-model")
    data = bytearray((folder / BACKGROUND_FILE).read_bytes())
    data[-100] ^= 0xFF
    (folder / BACKGROUND_FILE).write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="calibrate background"):
        load_background(folder)


@pytest.mark.data
def test_the_background_builder_embeds_split_b_into_a_bundle(tmp_path, monkeypatch):
    """A miniature LFW (real images of four people, split B = two of them) and a copy of a small bundle."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the evaluation's embedding cache
    from facegate.edge.cli import main
    from tests.helpers import need_lfw

    lfw = need_lfw()
    people = ["Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody", "Al_Gore"]
    root = tmp_path / "lfw"
    (root / "lfw-deepfunneled").mkdir(parents=True)
    for p in people:
        (root / "lfw-deepfunneled" / p).symlink_to(lfw / "lfw-deepfunneled" / p)
    a, b = " ".join(f"{p} 1" for p in people[:2]), " ".join(f"{p} 1" for p in people[2:])
    (root / "pairs.txt").write_text("10 1\n" + "\n".join([a] * 10 + [b] * 10) + "\n")  # folds 6-10: the last two
    bundle = tmp_path / "bundle"
    shutil.copytree(bundles_dir() / "facegate-mfn-onnx-int8", bundle)
    (bundle / "background.npz").unlink(missing_ok=True)
    code = main(["calibrate", "background", "--embedder", str(bundle), "--data", str(root), "--per-person", "2",
                 "--json"])
    assert code == 0
    entry = json.loads((bundle / "manifest.json").read_text())["background"]
    assert entry["people"] == 2 and entry["embeddings"] == 4 and entry["dtype"] == "float16"
    bg = load_background(bundle)
    assert bg.vectors.shape == (4, 128) and bg.model_id == entry["model_id"]
    assert list((tmp_path / "cache" / "facegate" / "eval").glob("lfw-*.npz"))
    # rebuilt from the same embeddings, the file is byte for byte the same: a rebuild shows any change
    assert main(["calibrate", "background", "--embedder", str(bundle), "--data", str(root), "--per-person", "2",
                 "--json"]) == 0
    assert json.loads((bundle / "manifest.json").read_text())["background"]["sha256"] == entry["sha256"]


# --- the calibrated margin at the door -----------------------------------------------------
def test_an_answer_within_the_margin_of_the_runner_up_is_refused():
    from facegate.edge.recognition import require_margin
    from facegate.edge.types import Match

    close = Match("cat", 0.50, 0.9, "m", best_name="cat", runner_up="dan", runner_up_distance=0.53)
    assert require_margin(close, None) is close
    refused = require_margin(close, 0.05)
    assert refused.name is None and refused.best_name == "cat" and not refused.accepted
    assert require_margin(close, 0.02).name == "cat"
    alone = Match("cat", 0.5, 0.9, "m", best_name="cat")  # one person enrolled: no runner-up, no margin
    assert require_margin(alone, 0.05).name == "cat"


def test_the_daemon_applies_the_configured_margin(tmp_path, tmp_gallery, fake_detector, fake_embedder, file_camera):
    from facegate.edge.lock import LogLock
    from facegate.edge.service import DoorDaemon, NullNotifier
    from tests.unit.test_daemon_loop import config

    for who, name in ((1, "alice"), (2, "bob")):
        tmp_gallery.enroll(name, [Embedding(fake_embedder.vector_for(who), fake_embedder.model_id)])
    grants = {}
    for margin in (None, 1.5):  # one-hot fakes: alice at 0, bob at 1.414
        base = config(tmp_path)
        cfg = replace(base, match=replace(base.match, margin=margin))
        lock = LogLock(unlock_seconds=0.2)
        with AuditLog(cfg.storage.gallery) as audit, DoorDaemon(
                cfg, source=file_camera([frame(w) for w in (None, 1, 1, 1, None)]), lock=lock, gallery=tmp_gallery,
                audit=audit, pipeline=FacePipeline(fake_detector, fake_embedder, cfg.quality),
                notifier=NullNotifier()) as daemon:
            grants[margin] = daemon.run().grants
        lock.close()
    assert grants == {None: 1, 1.5: 0}
