"""Reports: the text summary always, PNG plots when matplotlib is installed."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from facegate.edge.calibrate import report
from facegate.edge.calibrate.analysis import calibrate_scores
from facegate.edge.calibrate.scores import Household, gather_scores

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    return rng.normal(0.5, 0.1, 500), rng.normal(1.3, 0.1, 50_000)


def test_plots_are_written_when_matplotlib_is_present(tmp_path, scores):
    pytest.importorskip("matplotlib")
    files, note = report.write_report(tmp_path, "summary line", *scores, 0.9, "test")
    assert note is None
    assert sorted(f.name for f in files) == ["det.png", "scores.png", "summary.txt"]
    for name in ("det.png", "scores.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and 5_000 < len(data) < 400_000
    assert (tmp_path / "summary.txt").read_text() == "summary line\n"


def test_without_matplotlib_the_summary_is_written_and_says_how_to_get_plots(tmp_path, scores, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert not report.plots_available()
    files, note = report.write_report(tmp_path, "summary line", *scores, 0.9, "test")
    assert [f.name for f in files] == ["summary.txt"] and "facegate[report]" in note
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.txt"]
    assert "pip install 'facegate[report]'" in (tmp_path / "summary.txt").read_text()


def test_det_points_fall_as_the_threshold_moves(scores):
    fmr, fnmr = report.det_points(*scores)
    assert np.all(np.diff(fmr) >= 0) and np.all(np.diff(fnmr) <= 0)
    assert fmr[0] == 0 and fnmr[-1] == 0


def test_the_summary_states_the_threshold_the_support_and_the_advice():
    rng = np.random.default_rng(2)
    t = {n: rng.normal(size=(1, 16)).astype(np.float32) for n in ("ann", "bob")}
    t = {k: v / np.linalg.norm(v) for k, v in t.items()}
    probes = {k: v + 0.02 * rng.normal(size=(4, 16)).astype(np.float32) for k, v in t.items()}
    probes = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in probes.items()}
    cal = calibrate_scores(gather_scores(Household(t, probes), None), "m-1", 1e-4, previous_threshold=0.9)
    text = report.format_calibration(cal)
    assert "supported: NO" in text and "before: 0.9000" in text
    assert "ann: 4/4" in text and "not supported" in text
