"""Guided camera enrollment from a replayed session: bad frames are refused with what to change, poses are asked for.

The replay (``[camera] type = "replay"``) plays a folder of frames through
the door's own pipeline and quality gate, as ``facegate enroll NAME
--camera`` reads the real camera.
"""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from facegate.edge.cli import EXIT_ERROR, EXIT_OK, main
from facegate.edge.errors import BackendUnavailable


@pytest.fixture()
def portraits():
    from facegate.edge.eval.samples import sample_portrait

    try:
        return sample_portrait("astronaut"), sample_portrait("grace_hopper")
    except BackendUnavailable as exc:  # the demo portraits come with scikit-image / matplotlib
        pytest.skip(str(exc))


def door(tmp_path, frames: list[np.ndarray]):
    folder = tmp_path / "session"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    config = tmp_path / "door.toml"
    config.write_text(f'[storage]\ngallery = "{tmp_path / "g.db"}"\n\n[camera]\ntype = "replay"\npath = "{folder}"\n')
    return config


def turned(image: np.ndarray, degrees: float, scale: float = 1.0) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2.5), degrees, scale), (w, h),
                          borderMode=cv2.BORDER_REPLICATE)


def test_a_guided_session_refuses_dark_blurred_and_repeated_frames_and_asks_for_poses(tmp_path, capsys, portraits):
    face, _ = portraits
    frames = [(face * 0.12).astype(np.uint8),          # too dark
              cv2.GaussianBlur(face, (0, 0), 4),         # blurred
              face,                                      # taken: straight
              face,                                      # the same frame again: asks for a new angle
              np.ascontiguousarray(face[:, ::-1]),      # taken
              turned(face, 8, 0.9)]                      # taken
    config = door(tmp_path, frames)
    code = main(["enroll", "eileen", "--camera", "--frames", "3", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert "enrolled eileen: 3 template(s) added, 3 in all" in out
    assert "eileen: look straight at the camera" in err
    assert "eileen: turn your head a little to the left" in err and "eileen: turn your head a little to the right" in err
    assert "eileen: too dark: face a light" in err
    assert "blurred: hold still" in err
    assert "eileen: hold on: move a little (a new angle)" in err
    assert "3/3" in err


def test_a_session_of_someone_else_is_refused_with_their_name(tmp_path, capsys, portraits):
    _, other = portraits
    config = door(tmp_path, [other, turned(other, 6, 0.9)])
    assert main(["enroll", "grace", str(tmp_path / "grace.png"), "--config", str(config)]) == EXIT_ERROR
    capsys.readouterr()
    cv2.imwrite(str(tmp_path / "grace.png"), other)
    assert main(["enroll", "grace", str(tmp_path / "grace.png"), "--config", str(config)]) == EXIT_OK
    capsys.readouterr()
    code = main(["enroll", "eileen", "--camera", "--frames", "2", "--config", str(config), "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_ERROR and "eileen: this face matches grace" in err
    assert err.strip().splitlines()[-1].startswith("facegate enroll: error: nothing enrolled for eileen: no good frame")
    assert json.loads(out) == {"error": "nothing enrolled for eileen: no good frame (most often: this face matches "
                                        "grace)", "error_type": "EnrollmentRefused"}  # --json: the refusal too
    code = main(["list", "--config", str(config), "--json"])
    assert [p["name"] for p in json.loads(capsys.readouterr().out)["people"]] == ["grace"]


def test_a_session_that_runs_out_enrolls_what_it_has_and_says_so(tmp_path, capsys, portraits):
    face, _ = portraits
    config = door(tmp_path, [face, (face * 0.1).astype(np.uint8)])
    code = main(["enroll", "eileen", "--camera", "--frames", "4", "--config", str(config), "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK and json.loads(out)["added"] == 1
    assert "eileen: 1 of 4 frames taken" in err


def test_photos_and_camera_together_are_refused(tmp_path, capsys):
    assert main(["enroll", "x", "a.jpg", "--camera"]) == EXIT_ERROR
    assert "not both" in capsys.readouterr().err
    assert main(["enroll", "x"]) == EXIT_ERROR
    assert "--camera" in capsys.readouterr().err


def test_the_session_writes_progress_on_one_line_for_a_terminal(tmp_path, portraits):
    """On a terminal the bar redraws in place (carriage return), so a session is readable."""
    from facegate.edge.camera import ReplaySource
    from facegate.edge.config import Config
    from facegate.edge.enrollment import EnrollRules, enroll_camera
    from facegate.edge.gallery import Gallery
    from facegate.edge.pipeline import create_pipeline

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    face, _ = portraits
    pipeline = create_pipeline(Config.default())
    out = Tty()
    rules = EnrollRules.for_threshold(pipeline.embedder.thresholds.default)
    with Gallery(tmp_path / "g.db") as gallery:
        taken, total, reasons = enroll_camera(pipeline, gallery, "eileen", ReplaySource([face, face]), rules,
                                              frames=1, out=out, min_gap_s=0.0)
    assert total == 1 and len(taken) == 1 and reasons == []
    assert "\r\x1b[2K" in out.getvalue()

