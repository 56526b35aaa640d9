import numpy as np
import pytest

from facegate.edge.align import (
    CROP_SIZE,
    NO_QUALITY_GATE,
    TEMPLATE_112,
    QualityThresholds,
    align,
    pose_from_landmarks,
    similarity_transform,
    warp_face,
)
from facegate.edge.types import Detection


def _rotation(theta: float, scale: float, shift) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def test_similarity_transform_recovers_a_known_rotation_scale_and_shift():
    truth = _rotation(0.3, 2.5, (40.0, -12.0))
    src = TEMPLATE_112
    dst = _apply(truth, src)
    np.testing.assert_allclose(similarity_transform(src, dst), truth, atol=1e-9)


def test_aligned_landmarks_land_on_the_template():
    # A face placed rotated and scaled in a big frame: after alignment the
    # landmarks must sit where the template says, whatever the pose in the frame.
    m = _rotation(-0.4, 1.7, (200.0, 150.0))
    landmarks = _apply(m, TEMPLATE_112)
    to_crop = similarity_transform(landmarks, TEMPLATE_112)
    np.testing.assert_allclose(_apply(to_crop, landmarks), TEMPLATE_112, atol=1e-6)


def test_warp_face_returns_a_112_crop_of_the_marked_region():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[200:260, 300:360] = 255  # a bright square where the "face" is
    landmarks = _apply(_rotation(0.0, 0.5, (300.0, 200.0)), TEMPLATE_112)  # template scaled into the square
    crop = warp_face(frame, landmarks)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    assert crop[20:90, 20:90].mean() > 250  # the square fills the crop


def _detection(landmarks: np.ndarray, size: float = 100.0) -> Detection:
    return Detection((0.0, 0.0, size, size), 0.99, landmarks.astype(np.float32))


def test_frontal_pose_is_near_zero_and_a_turned_head_is_not():
    yaw, pitch = pose_from_landmarks(TEMPLATE_112)
    assert abs(yaw) < 0.02 and abs(pitch) < 0.02
    turned = TEMPLATE_112.copy()
    turned[2, 0] += 15  # nose moved towards the right eye
    assert pose_from_landmarks(turned)[0] > 0.5
    tilted = TEMPLATE_112.copy()
    tilted[2, 1] -= 12  # nose close to the eye line: head tilted back
    assert pose_from_landmarks(tilted)[1] < -0.45


def test_pose_does_not_change_with_in_plane_rotation():
    rotated = _apply(_rotation(0.5, 1.0, (0, 0)), TEMPLATE_112)
    yaw, pitch = pose_from_landmarks(rotated)
    assert abs(yaw) < 0.02 and abs(pitch) < 0.02


def test_quality_flags_dark_blurred_small_faces():
    rng = np.random.default_rng(0)
    sharp = rng.integers(60, 200, (112, 112, 3), dtype=np.uint8)
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[:112, :112] = sharp
    crop = align(frame, _detection(TEMPLATE_112, size=112), QualityThresholds())
    assert crop.quality.ok, crop.quality.reasons

    dark = align(frame // 8, _detection(TEMPLATE_112, size=112), QualityThresholds())
    assert any("dark" in r for r in dark.quality.reasons)

    flat = np.full((200, 200, 3), 128, np.uint8)
    blurred = align(flat, _detection(TEMPLATE_112, size=112), QualityThresholds())
    assert any("blurred" in r for r in blurred.quality.reasons)

    small = align(frame, _detection(TEMPLATE_112, size=30), QualityThresholds())
    assert any("small" in r for r in small.quality.reasons)


def test_no_quality_gate_accepts_everything():
    flat = np.zeros((200, 200, 3), np.uint8)
    assert align(flat, _detection(TEMPLATE_112, size=5), NO_QUALITY_GATE).quality.ok


@pytest.mark.parametrize("channels", [None, 4])
def test_alignment_of_grey_and_bgra_frames_after_conversion(channels):
    from facegate.edge.imageio import to_bgr

    base = np.random.default_rng(1).integers(0, 255, (150, 150), dtype=np.uint8)
    img = base if channels is None else np.dstack([base] * 4)
    crop = align(to_bgr(img), _detection(TEMPLATE_112, size=112))
    assert crop.image.shape == (112, 112, 3)


def test_a_region_crop_keeps_the_frames_own_pixels_and_never_stretches():
    from facegate.edge.align import cut_crop
    from facegate.edge.types import CropSpec

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    face = Detection((100.0, 60.0, 160.0, 140.0), 0.99, np.zeros((5, 2), np.float32))  # 60 x 80 px
    crop, m = cut_crop(frame, face, CropSpec("region", 200, margin=0.5))
    # grown by half the box per side: x 70..190, y 20..180, copied pixel for pixel at the top left
    assert crop.shape == (200, 200, 3) and np.array_equal(crop[:160, :120], frame[20:180, 70:190])
    assert not crop[160:].any() and np.allclose(m, [[1, 0, -70], [0, 1, -20]])
    small, m2 = cut_crop(frame, face, CropSpec("region", 80, margin=0.5))
    assert small.shape == (80, 80, 3) and m2[0, 0] == m2[1, 1] == 0.5  # shrunk alike on both axes to fit
