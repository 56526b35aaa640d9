"""The bundles shipped in models/bundles: intact, documented, the same network in every format, and the
door's default at least as good as FaceNet-CASIA on LFW-half."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.edge.embed import DEFAULT_BUNDLE, DEFAULT_EMBEDDER, OWN_NETWORK, create_embedder
from facegate.edge.embed.bundle import load_bundle
from facegate.edge.eval.samples import sample_portrait
from facegate.models import bundles_dir

SHIPPED = ("facegate-mfn-onnx-fp32", "facegate-mfn-onnx-int8", "facegate-mfn-tflite-fp32", "facegate-mfn-tflite-int8")
#: Every bundle in the package, whatever its family
ALL_SHIPPED = tuple(sorted(d.name for d in bundles_dir().iterdir() if (d / "manifest.json").is_file()))
#: FaceNet-CASIA through the same pipeline on LFW-half (README "Measured accuracy"): the default must match it
FACENET_TAR = {"1e-3": 0.969, "1e-4": 0.863}


@pytest.mark.parametrize("name", ALL_SHIPPED)
def test_each_shipped_bundle_matches_its_sha256_and_carries_its_own_figures(name):
    manifest, model = load_bundle(bundles_dir() / name)  # refuses a file that does not match
    assert manifest.name == name and model.stat().st_size < 30_000_000
    parity, pipeline = manifest.evaluation["parity"], manifest.evaluation["pipeline"]
    assert parity["crops"] >= 500 and 0.9 < parity["cosine_min"] <= parity["cosine_mean"] <= 1.0 + 1e-6
    assert pipeline["protocol"] == "lfw-half" and 0.5 < pipeline["accuracy_mean"] <= 1.0
    assert manifest.thresholds.default == manifest.thresholds.by_fmr["1e-4"]


def _embed_all(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    from facegate.edge.detect.mtcnn import MtcnnDetector

    faces = [sample_portrait(p) for p in ("astronaut", "grace_hopper")]
    detections = [MtcnnDetector(min_face_size=40).detect(img)[:1] for img in faces]
    out = {}
    for name in names:
        emb = create_embedder(name)  # by the shipped name, as `--embedder` takes it
        out[name] = np.concatenate([emb.embed(img, det) for img, det in zip(faces, detections)])
        emb.close()
    return out


def test_the_shipped_formats_give_the_same_embedding():
    pytest.importorskip("ai_edge_litert", reason="the tflite extra")
    e = _embed_all(SHIPPED)
    ref = e["facegate-mfn-onnx-fp32"]
    for name, vectors in e.items():
        cos = np.sum(vectors * ref, axis=1)  # unit vectors
        assert cos.min() > (0.9999 if name.endswith("fp32") else 0.9), (name, cos)
    # and in every format the network tells the two people apart at the door's threshold
    for name, vectors in e.items():
        threshold = load_bundle(bundles_dir() / name)[0].thresholds.default
        assert np.linalg.norm(vectors[0] - vectors[1]) > threshold, name


def test_the_doors_default_is_our_int8_network_and_matches_facenet_at_both_fars():
    emb = create_embedder(DEFAULT_EMBEDDER)
    assert DEFAULT_EMBEDDER == OWN_NETWORK and emb.name == DEFAULT_BUNDLE == "facegate-irn-onnx-int8"
    emb.close()
    manifest = load_bundle(bundles_dir() / DEFAULT_BUNDLE)[0]
    assert manifest.evaluation["export"]["precision"] == "int8"
    pipeline = manifest.evaluation["pipeline"]  # its own figures, through the door's detector and runtime
    for far, facenet in FACENET_TAR.items():
        assert pipeline[f"tar_at_far_{far}"] >= facenet, far
    assert manifest.evaluation["parity"]["cosine_mean"] >= 0.995


@pytest.mark.parametrize("family", ["facegate-irn", "facegate-irn-r112"])
def test_each_rungs_onnx_and_tflite_bundles_agree_and_tell_two_people_apart(family):
    pytest.importorskip("ai_edge_litert", reason="the tflite extra")
    names = (f"{family}-onnx-int8", f"{family}-tflite-int8")
    e = _embed_all(names)
    assert np.sum(e[names[0]] * e[names[1]], axis=1).min() > 0.99  # two INT8 runtimes, one network
    for name, vectors in e.items():
        threshold = load_bundle(bundles_dir() / name)[0].thresholds.default
        assert np.linalg.norm(vectors[0] - vectors[1]) > threshold, name
