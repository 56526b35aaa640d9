"""MtcnnDetector on real faces: counts, order, landmarks and frame coordinates."""

from __future__ import annotations

import importlib.util
from importlib.resources import files

import cv2
import numpy as np
import pytest

from facegate.edge.detect.base import FaceDetector
from facegate.edge.detect.mtcnn import MtcnnDetector, nms
from facegate.edge.imageio import load_image

from ..helpers import LFW

LFW_DIR = LFW / "lfw-deepfunneled"


def _sample(package: str, relpath: str) -> np.ndarray:
    """A public-domain portrait shipped inside an installed package, as BGR."""
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} not installed (pip install facegate[demo])")
    return load_image(files(package) / relpath)


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    return MtcnnDetector(min_face_size=40)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return _sample("skimage", "data/astronaut.png")  # 512x512, face ~115 px tall


@pytest.fixture(scope="module")
def grace() -> np.ndarray:
    return _sample("matplotlib", "mpl-data/sample_data/grace_hopper.jpg")  # face ~220 px tall


@pytest.fixture(scope="module")
def two_faces(astronaut: np.ndarray, grace: np.ndarray) -> np.ndarray:
    """Astronaut (smaller face) on the left, Grace Hopper (larger) on the right."""
    canvas = np.full((600, 1024, 3), 128, np.uint8)
    canvas[44:556, :512] = astronaut
    canvas[:, 512:] = grace
    return canvas


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def test_is_a_face_detector(detector: MtcnnDetector) -> None:
    assert isinstance(detector, FaceDetector)
    assert detector.type_key == "mtcnn"
    assert detector.min_face_size == 40


def test_astronaut_one_face_with_ordered_landmarks(detector: MtcnnDetector, astronaut: np.ndarray) -> None:
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.9
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    x1, y1, x2, y2 = face.box
    assert 150 < x1 < x2 < 300 and 30 < y1 < y2 < 200, face.box  # her face, in image pixels
    assert 90 < face.height < 150
    lm = face.landmarks
    assert np.all((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2))
    left_eye, right_eye, nose, mouth_left, mouth_right = lm
    assert left_eye[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_landmarks_follow_the_image_not_the_person(detector: MtcnnDetector, astronaut: np.ndarray) -> None:
    """Mirrored, "left_eye" is still the eye with the smaller x."""
    (face,) = detector.detect(astronaut[:, ::-1])
    assert face.landmarks[0, 0] < face.landmarks[1, 0]
    assert face.landmarks[3, 0] < face.landmarks[4, 0]


@pytest.mark.parametrize("convert", [cv2.COLOR_BGR2GRAY, cv2.COLOR_BGR2BGRA], ids=["grey", "bgra"])
def test_grey_and_bgra_find_the_same_face(
    detector: MtcnnDetector, astronaut: np.ndarray, convert: int
) -> None:
    (ref,) = detector.detect(astronaut)
    (face,) = detector.detect(cv2.cvtColor(astronaut, convert))
    assert np.allclose(face.box, ref.box, atol=4), (face.box, ref.box)
    assert np.allclose(face.landmarks, ref.landmarks, atol=4)


def test_boxes_are_in_original_frame_pixels(detector: MtcnnDetector, astronaut: np.ndarray) -> None:
    """Moving or shrinking the image moves or shrinks the answer the same way."""
    (ref,) = detector.detect(astronaut)
    canvas = np.full((700, 900, 3), 90, np.uint8)
    canvas[101:613, 203:715] = astronaut
    (moved,) = detector.detect(canvas)
    assert np.allclose(np.subtract(moved.box, (203, 101, 203, 101)), ref.box, atol=6)
    assert np.allclose(moved.landmarks - (203, 101), ref.landmarks, atol=4)

    half = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    (small,) = detector.detect(half)
    assert np.allclose(np.multiply(small.box, 2), ref.box, atol=6)
    assert np.allclose(small.landmarks * 2, ref.landmarks, atol=4)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((480, 640, 3), np.uint8),
        np.full((480, 640), 200, np.uint8),
        np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
    ],
    ids=["black", "grey-blank", "noise"],
)
def test_no_face_gives_empty_list(detector: MtcnnDetector, image: np.ndarray) -> None:
    assert detector.detect(image) == []


@pytest.mark.parametrize("shape", [(1, 1, 3), (8, 8, 3), (11, 300, 3), (30, 30, 3)])
def test_tiny_images_give_empty_list(detector: MtcnnDetector, astronaut: np.ndarray, shape) -> None:
    tiny = cv2.resize(astronaut, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).reshape(shape)
    assert detector.detect(tiny) == []


def test_two_faces_largest_first(detector: MtcnnDetector, two_faces: np.ndarray) -> None:
    faces = detector.detect(two_faces)
    assert len(faces) == 2
    big, small = faces
    assert big.area > small.area
    assert _centre(big.box)[0] > 512 > _centre(small.box)[0]  # Grace right, astronaut left


def test_min_face_size_filters_the_small_face(two_faces: np.ndarray) -> None:
    faces = MtcnnDetector(min_face_size=150).detect(two_faces)
    assert len(faces) == 1
    assert _centre(faces[0].box)[0] > 512 and faces[0].height >= 150


def test_max_face_size_skips_the_large_face(two_faces: np.ndarray) -> None:
    faces = MtcnnDetector(min_face_size=40, max_face_size=150).detect(two_faces)
    assert len(faces) == 1
    assert _centre(faces[0].box)[0] < 512 and faces[0].height <= 150


def test_pyramid_stays_within_the_frame() -> None:
    det = MtcnnDetector(min_face_size=40)
    scales = det.scales(480, 640)
    assert scales[0] == pytest.approx(12 / 40)
    assert all(12 / s <= 480 for s in scales)
    assert 12 / (scales[-1] * det.scale_factor) > 480  # nothing that still fits was dropped
    assert len(MtcnnDetector(min_face_size=40, max_face_size=120).scales(480, 640)) < len(scales)
    assert det.scales(30, 640) == []


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        MtcnnDetector(min_face_size=8)
    with pytest.raises(ValueError):
        MtcnnDetector(min_face_size=80, max_face_size=60)
    with pytest.raises(ValueError):
        MtcnnDetector(scale_factor=1.2)


def test_nms_union_and_min() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 6, 6], [50, 50, 60, 60]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    assert list(nms(boxes, scores, 0.5, "union")) == [3, 0, 2]
    assert list(nms(boxes, scores, 0.7, "min")) == [3, 0]  # the nested box goes too
    assert nms(np.empty((0, 4)), np.empty(0), 0.5).size == 0


@pytest.mark.data
def test_lfw_faces_are_found(detector: MtcnnDetector) -> None:
    if not LFW_DIR.is_dir():
        pytest.skip(f"{LFW_DIR} not present")
    paths = sorted(LFW_DIR.glob("*/*.jpg"))
    if len(paths) < 20:
        pytest.skip("LFW folder is incomplete")
    sample = paths[:: len(paths) // 20][:20]
    for path in sample:
        faces = detector.detect(load_image(path))
        assert faces, f"no face in {path.name}"
        # LFW is centred on the subject: one face must sit near the middle.
        offsets = [np.abs(_centre(f.box) - 125).max() for f in faces]
        assert min(offsets) < 25, f"{path.name}: no face near the centre"
