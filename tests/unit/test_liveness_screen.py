"""The screen-grid check and the attack simulator it is measured with."""

from __future__ import annotations

import numpy as np
import pytest
from facegate.edge.liveness import LivenessConfig, Verdict, make_sample
from facegate.edge.liveness.screen import ScreenGridCheck, face_patch, grid_score
from facegate.edge.liveness.simulate import Pose, camera_degrade, make_card, render_card
from facegate.edge.types import Detection


def portrait() -> np.ndarray:
    from facegate.edge.eval.samples import sample_portrait

    return sample_portrait("astronaut")[0:300, 80:380]  # face and shoulders, as a photo of one


def frame_of(species: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    background = np.full((480, 640, 3), 150, np.uint8)
    card = make_card(portrait(), species, rng)
    pose = Pose(yaw=8.0, pitch=-4.0, roll=3.0, x=0.0, y=0.0, z=20.0 if card.screen else 45.0)
    return camera_degrade(render_card(background, card, pose, supersample=4 if card.screen else 1), rng)


def centre_patch(frame: np.ndarray) -> np.ndarray:
    grey = frame.mean(axis=2).astype(np.uint8)
    found = face_patch(grey, (250.0, 170.0, 390.0, 310.0))
    assert found is not None
    return found[0]


def test_a_phone_screen_shows_a_grid_and_a_print_does_not() -> None:
    phone, printed = grid_score(centre_patch(frame_of("phone_replay"))), grid_score(centre_patch(frame_of("print_moved")))
    limit = LivenessConfig().screen_peak_ratio
    assert phone > limit > printed


def test_camera_noise_and_jpeg_blocks_are_not_a_grid() -> None:
    rng = np.random.default_rng(3)
    noise = np.clip(128 + rng.normal(0, 20, (480, 640)), 0, 255).astype(np.uint8)
    frame = camera_degrade(np.dstack([noise] * 3), rng)  # JPEG at quality 75-92: 8x8 blocks
    assert grid_score(centre_patch(frame)) < LivenessConfig().screen_peak_ratio


def test_a_pure_grid_scores_far_above_the_limit() -> None:
    stripes = np.tile(np.array([0, 255, 255], np.uint8), (96, 32))  # a period-3 pattern
    assert grid_score(stripes[:, :96]) > 10 * LivenessConfig().screen_peak_ratio


def test_the_check_waits_for_enough_patches_then_judges_their_median() -> None:
    check = ScreenGridCheck()
    det = Detection(box=(250.0, 170.0, 390.0, 310.0), score=0.99, landmarks=np.zeros((5, 2), np.float32))
    phone = [make_sample(frame_of("phone_replay", seed=k), det, k / 10, patch=True) for k in range(3)]
    assert check.judge(phone[:2]).verdict is Verdict.UNSURE
    result = check.judge(phone)
    assert result.verdict is Verdict.SPOOF and result.reason.startswith("pixel grid")


@pytest.mark.parametrize("size", [16, 24])
def test_faces_too_small_for_the_check_give_no_patch(size: int) -> None:
    assert face_patch(np.zeros((480, 640), np.uint8), (100.0, 100.0, 100.0 + size, 100.0 + size)) is None
