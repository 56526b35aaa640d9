"""The demo scenario: deterministic frames that the real detector and quality gate read as intended."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegate.edge.align import QualityThresholds, align
from facegate.edge.camera import ReplaySource
from facegate.edge.detect.mtcnn import MtcnnDetector
from facegate.edge.demo.scenario import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    ScenarioFrame,
    Shot,
    build_demo_scenario,
    doorway_background,
    render_shots,
    scenario_summary,
    write_scenario,
)
from facegate.edge.types import Detection

EILEEN, GRACE = "astronaut", "grace_hopper"


@pytest.fixture(scope="module")
def frames() -> list[ScenarioFrame]:
    return build_demo_scenario(seed=0)


@pytest.fixture(scope="module")
def detections(frames: list[ScenarioFrame]) -> list[list[Detection]]:
    """Every frame through the daemon's detector once (about 15 ms a frame)."""
    detector = MtcnnDetector(min_face_size=40)
    return [detector.detect(f.image) for f in frames]


def _indices(frames: list[ScenarioFrame], people: tuple[str, ...], condition: str = "") -> list[int]:
    return [i for i, f in enumerate(frames) if f.people == people and f.condition == condition]


def test_same_seed_same_frames(frames: list[ScenarioFrame]) -> None:
    again = build_demo_scenario(seed=0)
    assert len(again) == len(frames)
    for a, b in zip(frames, again):
        assert (a.truth, a.note, a.people, a.condition, a.shot) == (b.truth, b.note, b.people, b.condition, b.shot)
        assert np.array_equal(a.image, b.image)


def test_other_seed_other_frames() -> None:
    shots = [Shot(None, 1, "empty"), Shot(EILEEN, 2, "eileen")]
    a, b = render_shots(shots, seed=1), render_shots(shots, seed=2)
    assert all(not np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert [f.truth for f in a] == [None, EILEEN, EILEEN]


def test_frames_are_camera_like(frames: list[ScenarioFrame]) -> None:
    assert 120 <= len(frames) <= 140
    for f in frames:
        assert f.image.shape == (FRAME_HEIGHT, FRAME_WIDTH, 3)
        assert f.image.dtype == np.uint8
        assert f.truth == (f.people[0] if f.people else None)


def test_layout(frames: list[ScenarioFrame]) -> None:
    summary = scenario_summary(frames)
    assert summary[0][0] == 0 and summary[-1][1] == len(frames) - 1
    assert all(prev[1] + 1 == nxt[0] for prev, nxt in zip(summary, summary[1:]))  # contiguous
    truths = [truth for _, _, truth, _ in summary]
    assert truths[0] is None and truths[-1] is None
    # Eileen's two visits are separated by empty frames and the stranger.
    starts = [k for k, t in enumerate(truths) if t == EILEEN and truths[k - 1] != EILEEN]
    first, second = starts[:2]
    assert GRACE in truths[first:second] and None in truths[first:second]
    assert len(_indices(frames, (GRACE, EILEEN))) >= 3
    assert len(_indices(frames, (EILEEN,), "dark")) >= 3
    assert len(_indices(frames, (EILEEN,), "blurred")) >= 3


def test_background_has_no_face() -> None:
    background = doorway_background(np.random.default_rng(0))
    assert MtcnnDetector(min_face_size=40).detect(background) == []


def test_one_face_per_single_person_frame(frames: list[ScenarioFrame], detections: list[list[Detection]]) -> None:
    singles = [i for i, f in enumerate(frames) if len(f.people) == 1]
    found = [i for i in singles if len(detections[i]) == 1]
    assert len(found) >= 0.9 * len(singles), sorted(set(singles) - set(found))


def test_no_face_in_empty_frames(frames: list[ScenarioFrame], detections: list[list[Detection]]) -> None:
    empty = [i for i, f in enumerate(frames) if not f.people]
    assert len(empty) >= 40
    assert [i for i in empty if detections[i]] == []


def test_crowd_frames_largest_face_is_the_stranger(
    frames: list[ScenarioFrame], detections: list[list[Detection]]
) -> None:
    for i in _indices(frames, (GRACE, EILEEN)):
        front, behind = frames[i].face_px
        dets = detections[i]
        assert len(dets) == 2, i
        assert dets[0].area > dets[1].area  # the detector's "largest first"
        # The rendered heights tell who is who: Grace is drawn about twice Eileen's size.
        assert dets[0].height == pytest.approx(front, rel=0.2), i
        assert dets[1].height == pytest.approx(behind, rel=0.2), i


def test_quality_gate(frames: list[ScenarioFrame], detections: list[list[Detection]]) -> None:
    gate = QualityThresholds()

    def reasons(i: int) -> tuple[str, ...]:
        assert len(detections[i]) >= 1, f"frame {i}: no face to judge"
        return align(frames[i].image, detections[i][0], gate).quality.reasons

    for i in _indices(frames, (EILEEN,), "dark"):
        assert any(r.startswith("too dark") for r in reasons(i)), i
    for i in _indices(frames, (EILEEN,), "blurred"):
        assert any(r.startswith("blurred") for r in reasons(i)), i
    normal = [i for i in _indices(frames, (EILEEN,)) if len(detections[i]) == 1]
    passed = [i for i in normal if not reasons(i)]
    assert len(normal) >= 30
    assert len(passed) >= 0.8 * len(normal)


def test_write_scenario_replays(frames: list[ScenarioFrame], tmp_path: Path) -> None:
    paths = write_scenario(frames[:3], tmp_path / "scenario")
    assert [p.name for p in paths] == ["000000.jpg", "000001.jpg", "000002.jpg"]
    with ReplaySource(tmp_path / "scenario") as source:
        read = [source.read() for _ in range(4)]
    assert [r is None for r in read] == [False, False, False, True]
    assert read[0].image.shape == (FRAME_HEIGHT, FRAME_WIDTH, 3)
    diff = np.abs(read[0].image.astype(int) - frames[0].image.astype(int))
    assert diff.mean() < 3  # only a quality-95 re-encode apart


def test_shot_validation() -> None:
    with pytest.raises(ValueError):
        Shot("nobody", 3)
    with pytest.raises(ValueError):
        Shot(None, 3, behind=EILEEN)
    with pytest.raises(ValueError):
        Shot(EILEEN, 3, forced="foggy")
