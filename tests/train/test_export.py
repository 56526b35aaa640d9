"""Export: PyTorch -> ONNX / TFLite bundles (fp32 + INT8), checked the way the door loads them.

Crops are real: the public-domain portraits, detected and aligned by the
device's own pipeline, with door-camera augmentations.

The network is small and random, and a random network is a poor stand-in for
a trained one under INT8: with BatchNorm statistics measured on faces it is
chaotic (one grey level of input noise moves its embedding to cosine ~0.95),
while a trained face network is built to ignore such noise. :func:`net`
therefore gives it a smoothing stem, BatchNorm variances inflated 1.5x in the
body and the embedding BatchNorm measured on the resulting features: one
grey level of noise then costs < 0.01 of cosine and the embeddings of
different crops stay spread (mean cosine ~0), so INT8 parity says something.
The fp32 parity (> 0.9999 on every crop) is unaffected by any of this.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from facegate.edge.embed import create_embedder  # noqa: E402
from facegate.edge.embed.base import Thresholds  # noqa: E402
from facegate.edge.embed.bundle import load_bundle  # noqa: E402
from facegate.edge.errors import BackendUnavailable, ChecksumError  # noqa: E402

SMALL = dict(embedding_dim=64, stem_channels=32, head_channels=128,
             stages=((1, 32, 1, 2), (2, 48, 2, 2), (2, 64, 1, 2)))  # a residual block in the middle stage
THRESHOLDS = Thresholds(0.9, {"1e-3": 1.0, "1e-4": 0.9}, "test")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    """Aligned 112x112 crops of two portraits with door-camera augmentations: calibration and parity sets."""
    from facegate.edge.align import warp_face
    from facegate.edge.detect.mtcnn import MtcnnDetector
    from facegate.edge.eval.samples import sample_portrait
    from facegate.models.data import AugmentConfig, augment

    detector = MtcnnDetector(min_face_size=40)
    faces = []
    for name in ("astronaut", "grace_hopper"):
        image = sample_portrait(name)
        dets = detector.detect(image)
        assert dets, f"no face in {name}"
        faces.append(warp_face(image, dets[0].landmarks, 112))
    cfg = AugmentConfig(p_jpeg=0.0)  # keep the test fast; the rest is the training recipe

    def make(n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.stack([augment(faces[i % 2], rng, cfg) for i in range(n)])

    return {"calib": make(64, 1), "parity": make(48, 2), "bn": make(64, 3)}


@pytest.fixture(scope="module")
def net(crops):
    """The small network with BatchNorm statistics from crops (see the module docstring), in eval mode."""
    from facegate.models.data import preprocess
    from facegate.models.network import FaceEmbeddingNet, net_config_from_dict

    torch.manual_seed(0)
    model = FaceEmbeddingNet(net_config_from_dict(SMALL))
    stem = model.features[0][0].weight
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    x = torch.from_numpy(preprocess(crops["bn"]))
    with torch.no_grad():
        stem.copy_(stem.mean(dim=(2, 3), keepdim=True).expand_as(stem))  # a low-pass first layer
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        model.train()
        model(x)
        for m in bns[:-1]:
            m.running_var *= 1.5
        model.eval()
        f = model.embedding[0](model.gdc(model.features(x)).flatten(1))
        bns[-1].running_mean.copy_(f.mean(0))
        bns[-1].running_var.copy_(f.var(0))
    return model


def _info(**kw):
    from facegate.export.bundles import BundleInfo
    from facegate.models.network import BinaryHead

    head = BinaryHead(SMALL["embedding_dim"])
    torch.nn.init.normal_(head.linear.weight, std=0.1)
    return BundleInfo(thresholds=THRESHOLDS, name="t", version="7", binary_head=head.to_manifest(0.5),
                      evaluation={"accuracy_mean": 0.5}, calibration_source="portraits",
                      parity_source="portraits", **kw)


@pytest.fixture(scope="module")
def onnx_bundles(net, crops, tmp_path_factory):
    from facegate.export.bundles import export_onnx_bundles

    out = tmp_path_factory.mktemp("onnx")
    return export_onnx_bundles(net, out, crops["calib"], crops["parity"], _info())


@pytest.fixture(scope="module")
def tflite_bundles(net, crops, tmp_path_factory):
    pytest.importorskip("litert_torch")
    from facegate.export.bundles import export_tflite_bundles

    out = tmp_path_factory.mktemp("tflite")
    return export_tflite_bundles(net, out, crops["calib"], crops["parity"], _info())


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --- round trips --------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_export_writes_an_fp32_and_an_int8_bundle_the_door_loads(fmt, request, net, crops):
    from facegate.export.parity import parity, torch_embeddings

    bundles = request.getfixturevalue(f"{fmt}_bundles")
    assert [b.folder.name for b in bundles] == [f"t-{fmt}-fp32", f"t-{fmt}-int8"]
    for b in bundles:
        manifest, model = load_bundle(b.folder)  # checksum verified
        assert manifest == b.manifest and model.suffix == f".{fmt}"
        assert manifest.format == fmt and manifest.version == "7" and manifest.embedding_dim == 64
        assert manifest.thresholds == THRESHOLDS and manifest.binary_head is not None
        assert len(manifest.binary_head.weights) == 64
        ev = manifest.evaluation
        assert ev["accuracy_mean"] == 0.5 and ev["export"]["precision"] in ("fp32", "int8")
        assert ev["parity"]["crops"] == len(crops["parity"]) and ev["export"]["model_mb"] > 0
        emb = create_embedder(str(b.folder))
        assert type(emb.runner).__name__ == ("OnnxRunner" if fmt == "onnx" else "LiteRTRunner")
        assert emb.model_id == manifest.model_id
        # a fresh measurement on the calibration-like crops, through the device's embedder
        p = parity(net, emb, crops["parity"])
        if manifest.evaluation["export"]["precision"] == "fp32":
            assert p["cosine_min"] > 0.9999, p
        else:
            assert p["cosine_mean"] > 0.98 and p["cosine_min"] > 0.95, p
            # and no face is mistaken for another: each crop's nearest PyTorch embedding is its own
            got, ref = emb.embed_prepared(list(crops["parity"])), torch_embeddings(net, crops["parity"])
            assert (np.argmax(got @ ref.T, axis=1) == np.arange(len(ref))).all()
        emb.close()
    fp32, int8 = (b.model_file.stat().st_size for b in bundles)
    assert int8 < 0.5 * fp32


def test_tflite_bundles_take_nhwc_input_and_int8_io(tflite_bundles):
    fp32, int8 = (b.manifest.input for b in tflite_bundles)
    assert fp32.layout == int8.layout == "nhwc"
    assert (fp32.dtype, int8.dtype) == ("float32", "int8")
    emb = create_embedder(str(tflite_bundles[1].folder))
    assert np.dtype(emb.runner._in["dtype"]) == np.int8 and np.dtype(emb.runner._out["dtype"]) == np.int8


def test_onnx_and_tflite_give_the_same_embedding(onnx_bundles, tflite_bundles, crops):
    x = list(crops["parity"][:16])
    got = {f"{b.manifest.format}-{b.manifest.evaluation['export']['precision']}":
           create_embedder(str(b.folder)).embed_prepared(x) for b in onnx_bundles + tflite_bundles}
    assert _cos(got["onnx-fp32"], got["tflite-fp32"]).min() > 0.9999
    assert np.abs(got["onnx-fp32"] - got["tflite-fp32"]).max() < 2e-3
    assert _cos(got["onnx-int8"], got["tflite-int8"]).mean() > 0.97


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_a_batch_embeds_like_single_faces(fmt, request, crops):
    for b in request.getfixturevalue(f"{fmt}_bundles"):
        emb = create_embedder(str(b.folder))
        batch = emb.embed_prepared(list(crops["parity"][:5]))
        single = np.concatenate([emb.embed_prepared([c]) for c in crops["parity"][:5]])
        np.testing.assert_allclose(batch, single, atol=1e-5)
        assert emb.embed_prepared([]).shape == (0, 64)


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_a_tampered_model_file_is_refused(fmt, request, tmp_path):
    import shutil

    src = request.getfixturevalue(f"{fmt}_bundles")[1].folder
    folder = Path(shutil.copytree(src, tmp_path / src.name))
    manifest, model = load_bundle(folder)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ChecksumError):
        create_embedder(str(folder))


def test_tflite_embedder_says_how_to_install_the_runtime(tflite_bundles, monkeypatch):
    from facegate.edge.embed.bundle import BundleEmbedder as TfliteEmbedder

    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    with pytest.raises(BackendUnavailable, match=r"facegate\[tflite\]"):
        TfliteEmbedder(tflite_bundles[0].folder)


def test_a_bundle_that_disagrees_with_pytorch_is_refused(net, crops, tmp_path):
    from facegate.export import ExportError, bundles

    floors = {**bundles.MIN_COSINE, "fp32": ("cosine_min", 1.01)}
    with pytest.raises(ExportError, match="refused") as caught:
        bundles.export_onnx_bundles(net, tmp_path, crops["calib"][:8], crops["parity"][:8], _info(), min_cosine=floors)
    assert not isinstance(caught.value, bundles.BundleRefused)  # nothing was written
    assert not (tmp_path / "t-onnx-fp32" / "manifest.json").exists()
    # a refused INT8 bundle: the fp32 one stays, complete, and the error says so
    floors = {**bundles.MIN_COSINE, "int8": ("cosine_mean", 1.01)}
    with pytest.raises(bundles.BundleRefused, match="t-onnx-int8: cosine_mean") as caught:
        bundles.export_onnx_bundles(net, tmp_path, crops["calib"][:8], crops["parity"][:8], _info(), min_cosine=floors)
    (fp32,) = caught.value.written
    assert fp32.folder == tmp_path / "t-onnx-fp32" and load_bundle(fp32.folder)[0] == fp32.manifest
    assert not (tmp_path / "t-onnx-int8" / "manifest.json").exists()


# --- checkpoints -------------------------------------------------------------------------
def _same_net(a, b, crops) -> None:
    from facegate.export.parity import torch_embeddings

    np.testing.assert_allclose(torch_embeddings(a, crops[:4]), torch_embeddings(b, crops[:4]), atol=1e-5)


def test_load_checkpoint_reads_a_training_checkpoint(net, crops, tmp_path):
    import dataclasses

    from facegate.export import ExportError
    from facegate.export.checkpoint import load_checkpoint

    head = {"binary_head.linear.weight": torch.full((1, 64), 0.5), "binary_head.linear.bias": torch.tensor([-1.0])}
    report = {"protocol": "lfw-half", "impostor_pairs": 1000, "threshold_far_1e-3": 1.1, "threshold_far_1e-4": 0.95}
    ckpt = {"format": 1, "config": {"bundle_version": "1.2.0", "cache": "/nowhere"},
            "net_config": dataclasses.asdict(net.config),
            "model": {"net": net.state_dict(), "heads": {**head, "teacher_proj.weight": torch.zeros(2, 2)}},
            "state": {"step": 42, "epoch": 1, "seconds": 3.0}, "eval": report}
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    loaded, extras = load_checkpoint(tmp_path)  # the run folder
    _same_net(net, loaded, crops["parity"])
    assert extras["kind"] == "training" and extras["step"] == 42 and extras["version"] == "1.2.0"
    assert extras["thresholds"].default == 0.95 and extras["thresholds"].by_fmr == {"1e-3": 1.1, "1e-4": 0.95}
    assert "step 42" in extras["thresholds"].source
    assert extras["binary_head"].weights == (0.5,) * 64 and extras["binary_head"].bias == -1.0
    assert extras["net_config"] == net.config and not extras["folded"]
    assert extras["training"] == {"steps": 42, "epochs": 1, "seconds": 3.0, "miner": None,
                                  "losses": {"triplet": None, "distill_dlib": None, "distill_facenet": None,
                                             "binary_head": None}}
    from facegate.export.checkpoint import manifest_evaluation

    ev = manifest_evaluation({**report, "auc": 0.9, "eval_seconds": 2.0}, extras)
    assert ev == {"protocol": "lfw-half", "impostor_pairs": 1000, "threshold_far_1e-3": 1.1,
                  "threshold_far_1e-4": 0.95, "auc": 0.9, "training_step": 42, "training": extras["training"]}
    torch.save({**ckpt, "net_config": {**ckpt["net_config"], "bogus": 1}}, tmp_path / "bad.pt")
    with pytest.raises(ExportError, match="net_config: unknown key.*bogus"):
        load_checkpoint(tmp_path / "bad.pt")


def test_load_checkpoint_reads_plain_and_folded_state_dicts(net, crops, tmp_path):
    import dataclasses

    from facegate.export.checkpoint import load_checkpoint
    from facegate.models.network import fold_batchnorm

    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "plain.pt")
    (tmp_path / "plain.json").write_text(json.dumps(dataclasses.asdict(net.config)))
    loaded, extras = load_checkpoint(tmp_path / "plain.pt")
    _same_net(net, loaded, crops["parity"])
    assert extras["kind"] == "state_dict" and extras["thresholds"] is None and extras["binary_head"] is None
    torch.save({"net_config": dataclasses.asdict(net.config), "folded": True, "step": 3,
                "state_dict": fold_batchnorm(net).state_dict()}, tmp_path / "folded.pt")
    loaded, extras = load_checkpoint(tmp_path / "folded.pt")
    _same_net(net, loaded, crops["parity"])
    assert extras["kind"] == "weights" and extras["folded"] and extras["step"] == 3


def test_facegate_export_onnx_command(net, crops, tmp_path, capsys):
    import dataclasses

    from facegate.edge.cli import main

    torch.save({"format": 1, "net_config": dataclasses.asdict(net.config), "model": {"net": net.state_dict()},
                "eval": {"threshold_far_1e-3": 1.1, "threshold_far_1e-4": 0.95, "accuracy_mean": 0.6}},
               tmp_path / "ckpt.pt")
    np.save(tmp_path / "crops.npy", np.concatenate([crops["calib"], crops["parity"]]))
    code = main(["export", "onnx", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "out"), "--calib",
                 str(tmp_path / "crops.npy"), "--calib-count", "32", "--parity-count", "40", "--json"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["bundle"]).name for r in rows] == ["facegate-mfn-onnx-fp32", "facegate-mfn-onnx-int8"]
    manifest, _ = load_bundle(rows[1]["bundle"])
    assert manifest.thresholds.default == 0.95 and manifest.evaluation["accuracy_mean"] == 0.6
    assert manifest.evaluation["parity"]["crops"] == 40 and manifest.evaluation["export"]["calibration"]["crops"] == 32
    # no thresholds anywhere: a one-line error, not a bundle with a made-up threshold
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    (tmp_path / "nc.json").write_text(json.dumps(dataclasses.asdict(net.config)))
    code = main(["export", "onnx", str(tmp_path / "bare.pt"), "--net-config", str(tmp_path / "nc.json"),
                 "--out", str(tmp_path / "o2"), "--calib", str(tmp_path / "crops.npy")])
    assert code == 2 and "no evaluated thresholds" in capsys.readouterr().err


def test_the_export_command_registers_without_torch():
    code = ("import sys; from facegate.edge.cli import build_parser; build_parser(); "
            "assert 'facegate.export.cli' in sys.modules; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_bench_reports_the_model_file_size(onnx_bundles):
    from facegate.edge.eval.bench import _model_mb

    b = onnx_bundles[0]
    assert _model_mb(create_embedder(str(b.folder))) == round(b.model_file.stat().st_size / 1e6, 3)
    assert _model_mb(object()) is None


def test_a_tflite_bundle_runs_without_torch(tflite_bundles):
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "litert_torch", "jax", "tensorflow"):
            raise ImportError("blocked")
sys.meta_path.insert(0, Block())
import numpy as np
from facegate.edge.embed import create_embedder
for folder in {[str(b.folder) for b in tflite_bundles]!r}:
    v = create_embedder(folder).embed_prepared([np.full((112, 112, 3), 100, np.uint8)] * 2)
    assert v.shape == (2, 64), v.shape
assert "torch" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
