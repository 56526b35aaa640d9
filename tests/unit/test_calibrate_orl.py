"""Replay calibration on ORL (grey faces): one image enrolled per person, probes from the rest, through the CLI."""

from __future__ import annotations

import json
import shutil

import pytest

from facegate.edge.cli import main
from tests.helpers import SHARED_DATA

ORL = SHARED_DATA / "orl"
PEOPLE = [f"s{i}" for i in range(1, 11)]

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def door(tmp_path_factory):
    if not (ORL / "s1" / "1.pgm").is_file():
        pytest.skip("../shared/data/orl is not available")
    from facegate.edge.config import Config
    from facegate.edge.gallery import Gallery
    from facegate.edge.pipeline import create_pipeline
    from facegate.edge.recognition import enroll

    tmp = tmp_path_factory.mktemp("orl")
    config = tmp / "facegate.toml"
    config.write_text(f'# the test door\n[storage]\ngallery = "{tmp / "gallery.db"}"\n\n[match]\nthreshold = 0.95\n')
    pipeline = create_pipeline(Config.load(config))
    with Gallery(tmp / "gallery.db") as gallery:
        for name in PEOPLE:
            enroll(pipeline, gallery, name, [ORL / name / "1.pgm"])
            (tmp / "probes" / name).mkdir(parents=True)
            for k in (2, 3, 4, 5):
                shutil.copyfile(ORL / name / f"{k}.pgm", tmp / "probes" / name / f"{k}.pgm")  # the loader refuses links
    return tmp, config


def test_orl_calibration_end_to_end(door, capsys):
    tmp, config = door
    before = config.read_text()
    code = main(["calibrate", "--config", str(config), "--probes", str(tmp / "probes"), "--json",
                 "--report", str(tmp / "report")])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["supported"] is True and out["target_fmr"] == 1e-4
    assert out["genuine_comparisons"] + out["probes_refused"] == 40
    assert out["impostor_comparisons"] >= 29_956 and out["impostor_sources"]["background"] > 0
    assert out["fmr_upper_95"] <= 1e-4 and out["fnmr"] <= 0.1
    assert out["previous_threshold"] == 0.95 and out["written"] == str(config)
    assert len(out["people"]) == 10 and out["closest_pair"]["a"] in PEOPLE
    assert out["binary_head"]["probability_threshold"] is not None
    text = config.read_text()
    assert text.startswith("# the test door") and "was threshold = 0.95" in text
    from facegate.edge.config import Config

    assert Config.load(config).match.threshold == pytest.approx(out["threshold"], abs=1e-6)
    assert (tmp / "report" / "summary.txt").read_text().startswith("facegate calibrate: ")
    config.write_text(before)


def test_orl_calibration_without_the_background_set_is_refused_and_writes_nothing(door, capsys):
    tmp, config = door
    before = config.read_text()
    code = main(["calibrate", "--config", str(config), "--probes", str(tmp / "probes"), "--no-background"])
    out = capsys.readouterr().out
    assert code == 1
    assert "supported: NO" in out and "nothing written" in out and "more probe images" in out
    assert config.read_text() == before


def test_a_guided_camera_session_from_a_replay_camera(door, capsys):
    tmp, config = door
    cam = tmp / "camera.toml"
    cam.write_text(config.read_text() + f'\n[camera]\ntype = "replay"\npath = "{tmp / "probes" / "s3"}"\n')
    code = main(["calibrate", "--config", str(cam), "--camera", "--person", "s3", "--frames", "3", "--json",
                 "--dry-run"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code in (0, 1) and out["written"] is None
    assert out["genuine_comparisons"] == 3 and [p["probes"] for p in out["people"] if p["name"] == "s3"] == [3]
    assert "s3: look straight at the camera" in captured.err and "3/3" in captured.err


def test_calibrate_says_where_genuine_scores_come_from(door, capsys):
    _, config = door
    assert main(["calibrate", "--config", str(config)]) == 2
    assert "--probes DIR or --camera" in capsys.readouterr().err
