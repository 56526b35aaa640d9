"""Enrollment sanity, tried as a new user would: a copy, a face unlike the person's photos, a face of someone else.

Real faces through the door's own model: the built-in demo portraits (two
different people), and LFW's Gordon Brown and Tony Blair where the shared
data is present. Each refusal is one line naming its override flag, and
nothing is written.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from facegate.edge.align import QualityThresholds
from facegate.edge.cli import EXIT_ERROR, EXIT_OK, EXIT_REJECT, main
from facegate.edge.enrollment import EnrollRules, TemplateCheck, advice
from facegate.edge.errors import BackendUnavailable
from facegate.edge.types import Embedding, Quality

from tests.helpers import need_lfw


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def templates(capsys, gallery) -> dict[str, int]:
    code, out, _ = run(capsys, "list", "--gallery", gallery, "--json")
    assert code == EXIT_OK
    return {p["name"]: p["templates"] for p in json.loads(out)["people"]}


@pytest.fixture()
def photos(tmp_path):
    from facegate.edge.eval.samples import portrait_path, sample_portrait

    try:
        astronaut = sample_portrait("astronaut")
        hopper = str(portrait_path("grace_hopper"))
    except BackendUnavailable as exc:  # the demo portraits come with scikit-image / matplotlib
        pytest.skip(str(exc))
    again = tmp_path / "astronaut_again.png"
    cv2.imwrite(str(again), astronaut[:, ::-1])  # the same person, another photo of her (mirrored)
    return {"astronaut": str(portrait_path("astronaut")), "astronaut_again": str(again), "hopper": hopper,
            "gallery": str(tmp_path / "g.db")}


def test_the_same_photo_twice_is_skipped_as_a_copy_unless_allowed(capsys, photos):
    g = ("--gallery", photos["gallery"])
    assert run(capsys, "enroll", "eileen", photos["astronaut"], *g)[0] == EXIT_OK
    code, out, _ = run(capsys, "enroll", "eileen", photos["astronaut"], *g)
    assert code == EXIT_OK and "skipped: a near-duplicate of a template eileen already has" in out
    assert "--allow-duplicate" in out and "0 template(s) added, 1 skipped" in out
    assert templates(capsys, photos["gallery"]) == {"eileen": 1}
    assert run(capsys, "enroll", "eileen", photos["astronaut"], *g, "--allow-duplicate")[0] == EXIT_OK
    assert templates(capsys, photos["gallery"]) == {"eileen": 2}


def test_a_second_real_photo_of_the_person_is_taken(capsys, photos):
    g = ("--gallery", photos["gallery"])
    assert run(capsys, "enroll", "eileen", photos["astronaut"], *g)[0] == EXIT_OK
    code, out, _ = run(capsys, "enroll", "eileen", photos["astronaut_again"], *g)
    assert code == EXIT_OK and "1 template(s) added, 2 in all" in out


def test_someone_elses_face_under_a_name_is_refused_unless_allowed(capsys, photos):
    g = ("--gallery", photos["gallery"])
    assert run(capsys, "enroll", "eileen", photos["astronaut"], *g)[0] == EXIT_OK
    code, _, err = run(capsys, "enroll", "eileen", photos["hopper"], *g)
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "this face does not look like eileen's other photos" in err and "--allow-mismatch" in err
    assert templates(capsys, photos["gallery"]) == {"eileen": 1}
    assert run(capsys, "enroll", "eileen", photos["hopper"], *g, "--allow-mismatch")[0] == EXIT_OK
    assert templates(capsys, photos["gallery"]) == {"eileen": 2}


def test_one_face_under_two_names_is_refused_unless_allowed(capsys, photos):
    g = ("--gallery", photos["gallery"])
    assert run(capsys, "enroll", "eileen", photos["astronaut"], *g)[0] == EXIT_OK
    code, _, err = run(capsys, "enroll", "bob", photos["astronaut_again"], *g)
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1
    assert "this face matches eileen" in err and "--allow-other-person" in err
    assert templates(capsys, photos["gallery"]) == {"eileen": 1}
    assert run(capsys, "enroll", "bob", photos["astronaut_again"], *g, "--allow-other-person")[0] == EXIT_OK
    assert templates(capsys, photos["gallery"]) == {"eileen": 1, "bob": 1}
    assert run(capsys, "enroll", "grace", photos["hopper"], *g)[0] == EXIT_OK  # a different face is welcome


def test_the_door_threshold_from_the_config_decides(capsys, photos, tmp_path):
    """A door set to a tiny threshold takes the other portrait for nobody: the check follows [match] threshold."""
    config = tmp_path / "door.toml"
    config.write_text(f'[storage]\ngallery = "{photos["gallery"]}"\n\n[match]\nthreshold = 0.05\n')
    assert run(capsys, "enroll", "eileen", photos["astronaut"], "--config", config)[0] == EXIT_OK
    code, _, err = run(capsys, "enroll", "eileen", photos["astronaut_again"], "--config", config)
    assert code == EXIT_ERROR and "threshold 0.050" in err


def test_a_folder_reports_each_photo_and_enrolls_the_good_ones(capsys, photos, tmp_path):
    folder = tmp_path / "eileen"
    folder.mkdir()
    image = cv2.imread(photos["astronaut"])
    cv2.imwrite(str(folder / "1_good.png"), image)
    cv2.imwrite(str(folder / "2_copy.png"), image)
    cv2.imwrite(str(folder / "3_dark.png"), (image * 0.15).astype(np.uint8))
    cv2.imwrite(str(folder / "4_someone_else.png"), cv2.imread(photos["hopper"]))
    (folder / "5_junk.jpg").write_bytes(b"not a photo")
    code, out, _ = run(capsys, "enroll", "eileen", folder, "--gallery", photos["gallery"])
    lines = out.strip().splitlines()
    assert code == EXIT_OK, out
    assert lines[0] == "1_good.png: taken"
    assert lines[1].startswith("2_copy.png: skipped: a near-duplicate")
    assert lines[2].startswith("3_dark.png: refused:") and "too dark: face a light" in lines[2]
    assert lines[3].startswith("4_someone_else.png: refused: this face does not look like eileen's other photos")
    assert lines[4].startswith("5_junk.jpg: refused: not a readable image")
    assert lines[5].startswith("enrolled eileen: 1 template(s) added, 1 skipped, 3 refused, 1 in all")


@pytest.mark.data
def test_gordon_brown_enrolled_as_tony_is_refused_and_never_verifies(capsys, tmp_path):
    lfw = need_lfw() / "lfw-deepfunneled"
    tony, gordon = lfw / "Tony_Blair", lfw / "Gordon_Brown"
    g = ("--gallery", tmp_path / "g.db")
    assert run(capsys, "enroll", "tony", tony / "Tony_Blair_0002.jpg", tony / "Tony_Blair_0003.jpg", *g)[0] == EXIT_OK
    code, _, err = run(capsys, "enroll", "tony", gordon / "Gordon_Brown_0001.jpg", *g)
    assert code == EXIT_ERROR and "does not look like tony's other photos" in err
    code, out, _ = run(capsys, "verify", "tony", gordon / "Gordon_Brown_0001.jpg", *g)
    assert code == EXIT_REJECT and out.startswith("REJECT")
    code, _, err = run(capsys, "enroll", "blair", tony / "Tony_Blair_0004.jpg", *g)
    assert code == EXIT_ERROR and "this face matches tony" in err


# --- the checks themselves, on known vectors --------------------------------------------
def _unit(*xs: float) -> Embedding:
    v = np.asarray(xs, np.float32)
    return Embedding(v / np.linalg.norm(v), "m")


def test_the_checks_on_known_distances():
    rules = EnrollRules.for_threshold(1.0)
    assert rules.duplicate_distance == pytest.approx(0.15)
    a, b = _unit(1, 0, 0), _unit(0, 1, 0)
    check = TemplateCheck("alice", "m", rules, ["alice", "bob"], np.stack([a.vector, b.vector]))
    assert check.judge(_unit(1, 0.01, 0))[0] == "skipped"
    assert check.judge(_unit(1, 0.4, 0))[0] == "taken"
    status, why, flag = check.judge(_unit(0.3, 1, 0))  # nearer bob than alice, within the threshold of bob
    assert (status, flag) == ("refused", "--allow-other-person") and "matches bob" in why
    status, why, flag = check.judge(_unit(0, 0, 1))  # 1.41 from everyone
    assert (status, flag) == ("refused", "--allow-mismatch") and "alice's other photos" in why
    check.take(_unit(0, 0, 1))
    assert check.known == 2 and check.judge(_unit(0, 0, 1))[0] == "skipped"  # a copy of one taken just now


def test_a_new_person_is_checked_only_against_the_others():
    check = TemplateCheck("carol", "m", EnrollRules.for_threshold(1.0), ["alice"], np.stack([_unit(1, 0, 0).vector]))
    assert check.judge(_unit(0, 0, 1))[0] == "taken"


def test_the_advice_says_which_way_to_move():
    t = QualityThresholds()
    ok = Quality(face_px=200, sharpness=100, brightness=120, yaw=0.0, pitch=0.0)
    assert advice(ok, t) == ()
    dark = Quality(face_px=40, sharpness=100, brightness=10, yaw=0.8, pitch=-0.9)
    words = advice(dark, t)
    assert words[0].startswith("face too small: come a little closer")
    assert words[1].startswith("too dark: face a light")
    assert words[2].startswith("head turned: turn a little to your right")
    assert words[3].startswith("head tilted: lower your chin a little")
    assert advice(Quality(200, 5, 250, -0.8, 0.9), t) == (
        "too bright: move out of the glare (brightness 250 > 220)",
        "blurred: hold still (sharpness 5 < 20)",
        "head turned: turn a little to your left (yaw -0.80, limit 0.45)",
        "head tilted: lift your chin a little (pitch +0.90, limit 0.45)",
    )
