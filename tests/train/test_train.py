"""Training: recipes, a tiny run per miner, exact resume, DDP on CPU, the end-of-run export, the LFW-half report."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from facegate.edge.eval.lfw import Pair, load_protocol  # noqa: E402
from facegate.models import cli  # noqa: E402
from facegate.models.checkpoint import load_checkpoint, load_weights, net_from_checkpoint  # noqa: E402
from facegate.models.evalset import EvalSet, build_eval_set, eval_report, load_eval_set, write_eval_set  # noqa: E402
from facegate.models.evaluate import embed_crops  # noqa: E402
from facegate.models.loop import train  # noqa: E402
from facegate.models.objective import autocast_dtype  # noqa: E402
from facegate.models.prepare import write_cache  # noqa: E402
from facegate.models.recipe import TrainConfig, TrainError, build_net_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: 0.02 M parameters, a few ms per step: tests check behaviour, not accuracy.
TINY_NET = {"stem_channels": 8, "head_channels": 32, "stages": [[1, 8, 1, 2], [2, 16, 1, 2], [2, 16, 1, 2]]}


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _crops(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth random 'faces': upsampled 8x8 noise, so augmentations and the net see structure."""
    small = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return np.stack([cv2.resize(s, (112, 112), interpolation=cv2.INTER_LINEAR) for s in small])


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    """6 people x 3 images + 4 single-image people; teacher rows partly NaN, as after failures."""
    rng = np.random.default_rng(0)
    persons = [f"p{i}" for i in range(6) for _ in range(3)] + [f"solo{i}" for i in range(4)]
    n = len(persons)
    dlib, facenet = _unit(rng, n, 128), _unit(rng, n, 512)
    dlib[[1, 19]] = np.nan
    facenet[[2]] = np.nan
    return write_cache(tmp_path_factory.mktemp("cache"), _crops(rng, n), persons,
                       teachers={"dlib": dlib, "facenet": facenet})


@pytest.fixture(scope="module")
def tiny_eval(tmp_path_factory) -> Path:
    """5 people x 3 crops, one failure to acquire, one matched and one mismatched pair per fold 6-10."""
    rng = np.random.default_rng(1)
    people = [f"B{i}" for i in range(5) for _ in range(3)]
    paths = [f"lfw-deepfunneled/{p}/{p}_{j % 3 + 1:04d}.jpg" for j, p in enumerate(people)]
    ok = np.ones(len(paths), bool)
    ok[4] = False
    pairs = []
    for f in range(6, 11):
        a, b = f"B{f - 6}", f"B{(f - 5) % 5}"
        pairs += [Pair(f, a, 1, a, 2), Pair(f, a, 3, b, 1)]
    return write_eval_set(tmp_path_factory.mktemp("eval"), _crops(rng, len(paths)), paths, people, ok, pairs)


def _config(cache: Path, out: Path, **kw) -> TrainConfig:
    base = dict(cache=str(cache), out=str(out), p=3, k=2, epochs=1, steps_per_epoch=2, threads=1, net=TINY_NET,
                warmup_steps=1, log_every=1, export=False, eval_every_epochs=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


# --- configuration ---------------------------------------------------------------------------
def test_config_round_trip_unknown_keys_and_extends(tmp_path):
    cfg = TrainConfig(cache="c", out="o", eval_cache="e", seed=7, epochs=3, max_minutes=1.5, p=8, k=3, lr=1e-3,
                      optimizer="sgd", miner="semi_hard", distill_dlib=0.5, distill_facenet=2.0,
                      distill_facenet_mode="projection", binary_head=0.25, distill_extra_batch=16, augment=False,
                      net={"width": 0.5, "stages": [[1, 64, 1, 2], [2, 128, 2, 2], [2, 128, 1, 2]]})
    path = tmp_path / "r.toml"
    path.write_text(cfg.to_toml())
    assert TrainConfig.from_toml(path) == cfg
    assert build_net_config(cfg.net).stem_channels == 32  # width 0.5 of 64

    path.write_text('cache = "c"\nout = "o"\nlr = 1e-3\nbogus = 1\nmargn = 0.3\n')
    with pytest.raises(TrainError, match="unknown key.*bogus, margn"):
        TrainConfig.from_toml(path)
    path.write_text('cache = "c"\nout = "o"\n[net]\nwidht = 2\n')
    with pytest.raises(TrainError, match="net: unknown key.*widht"):
        TrainConfig.from_toml(path)
    path.write_text('cache = "c"\nout = "o"\np = "16"\n')
    with pytest.raises(TrainError, match="p = '16' should be int"):
        TrainConfig.from_toml(path)
    path.write_text('cache = "c"\nout = "o"\nminer = "hardest"\n')
    with pytest.raises(TrainError, match="miner"):
        TrainConfig.from_toml(path)
    # extends: the child's keys win, [net] tables merge
    (tmp_path / "base.toml").write_text('cache = "c"\nout = "o"\nlr = 0.1\n[net]\nwidth = 0.5\n')
    path.write_text('extends = "base.toml"\nlr = 0.2\n[net]\ndropout = 0.1\n')
    child = TrainConfig.from_toml(path, seed=5)
    assert (child.lr, child.seed, child.net) == (0.2, 5, {"width": 0.5, "dropout": 0.1})


def test_shipped_recipes_load():
    recipes = Path(__file__).resolve().parents[2] / "models" / "recipes"
    names = {p.stem: TrainConfig.from_toml(p) for p in recipes.glob("*.toml") if not p.stem.startswith("_")}
    default = names.pop("mfn_distill")
    assert (default.miner, default.p, default.k, default.optimizer, default.lr) == ("semi_hard", 16, 4, "adamw", 2e-3)
    assert default.max_minutes <= 150 and default.threads == 2  # reproducible on the 2-core reference machine
    assert default.distill_dlib > 0 and default.distill_facenet > 0 and default.binary_head > 0
    stage2 = names.pop("mfn_distill_stage2")  # continues from the shipped stage-1 weights, teachers centred
    assert Path(stage2.init_from) == Path("models/facegate-mfn-stage1.pt") and stage2.centre_teachers
    assert stage2.miner == default.miner and stage2.out != default.out and stage2.max_minutes <= 150
    assert (Path(__file__).resolve().parents[2] / stage2.init_from).is_file()
    assert {c.miner for c in names.values()} == {"random", "semi_hard", "batch_hard"}
    assert len({c.max_minutes for c in names.values()}) == 1  # one budget for the whole ablation


# --- training ---------------------------------------------------------------------------------
@pytest.mark.parametrize("miner,facenet_mode", [("random", "similarity"), ("semi_hard", "similarity"),
                                                ("batch_hard", "projection")])
def test_tiny_run_each_miner(tiny_cache, tiny_eval, tmp_path, miner, facenet_mode):
    cfg = _config(tiny_cache, tmp_path / "run", eval_cache=str(tiny_eval), miner=miner, distill_dlib=1.0,
                  distill_facenet=1.0, distill_facenet_mode=facenet_mode, binary_head=0.5, distill_extra_batch=2)
    res = train(cfg, progress=False)
    assert res.state.step == 2 and res.state.epoch == 1 and res.state.stop_reason == "epochs"
    rows = [json.loads(x) for x in (res.out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in steps] == [1, 2]
    for key in ("loss", "triplet", "distill_dlib", "distill_facenet", "binary_head", "lr", "images_per_s"):
        assert all(np.isfinite(r[key]) for r in steps), key
    assert steps[0]["images_per_s"] > 0 and steps[0]["triplets"] > 0
    (ev,) = [r for r in rows if r["kind"] == "eval"]
    for key in ("accuracy_mean", "auc", "eer", "tar_at_far_1e-3", "tar_at_far_1e-4", "head_accuracy_at_0.5",
                "head_accuracy_mean"):
        assert 0.0 <= ev[key] <= 1.0, key
    assert ev["failures_to_acquire"] == 1 and ev["pairs"] == 10
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["state"]["step"] == 2 and ckpt["eval"]["pairs"] == 10
    assert ("projection.linear.weight" in ckpt["model"]["heads"]) == (facenet_mode == "projection")
    result = json.loads((res.out / "result.json").read_text())
    assert result["steps"] == 2 and result["eval"]["auc"] == ev["auc"]
    with pytest.raises(TrainError, match="--resume"):
        train(cfg, progress=False)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_replays_an_uninterrupted_run_exactly(tiny_cache, tmp_path):
    kw = dict(epochs=2, steps_per_epoch=2, binary_head=0.5, distill_dlib=1.0, distill_extra_batch=2,
              miner="random", net={**TINY_NET, "dropout": 0.2})
    whole = train(_config(tiny_cache, tmp_path / "a", **kw), progress=False)
    assert whole.state.step == 4
    part = train(_config(tiny_cache, tmp_path / "b", max_steps=3, **kw), progress=False)
    assert part.state.step == 3 and part.state.stop_reason == "max_steps"
    assert not all(torch.equal(v, _params(whole.model)[k]) for k, v in _params(part.model).items())
    rest = train(_config(tiny_cache, tmp_path / "b", **kw), resume=True, progress=False)
    assert rest.state.step == 4 and rest.state.epoch == 2
    a, b = _params(whole.model), _params(rest.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_init_from_starts_a_new_run_from_another_runs_weights(tiny_cache, tmp_path):
    first = train(_config(tiny_cache, tmp_path / "first", epochs=1, steps_per_epoch=2), progress=False)
    cfg = _config(tiny_cache, tmp_path / "second", epochs=1, steps_per_epoch=2, max_steps=1, lr=0.0, warmup_steps=0,
                  init_from=str(tmp_path / "first"))
    second = train(cfg, progress=False)
    assert second.state.step == 1  # a new run: its own step count, optimiser and schedule
    # with a zero learning rate only BatchNorm's running statistics move: the weights are the first run's
    a, b = _params(first.net), _params(second.net)
    for k in a:
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(a[k], b[k]), k


def test_init_from_refuses_another_architecture_and_folded_weights(tiny_cache, tmp_path):
    from facegate.models.network import FaceEmbeddingNet, fold_batchnorm
    from facegate.models.recipe import net_config_to_dict

    train(_config(tiny_cache, tmp_path / "first", epochs=1, steps_per_epoch=1), progress=False)
    wider = {**TINY_NET, "head_channels": 48}
    with pytest.raises(TrainError, match="not the recipe's"):
        train(_config(tiny_cache, tmp_path / "a", net=wider, init_from=str(tmp_path / "first")), progress=False)
    net = FaceEmbeddingNet(build_net_config(TINY_NET)).eval()
    torch.save({"net_config": net_config_to_dict(net.config), "folded": True,
                "state_dict": fold_batchnorm(net).state_dict()}, tmp_path / "folded.pt")
    with pytest.raises(TrainError, match="folded"):
        train(_config(tiny_cache, tmp_path / "b", init_from=str(tmp_path / "folded.pt")), progress=False)
    with pytest.raises(TrainError, match="init_from"):
        train(_config(tiny_cache, tmp_path / "c", init_from=str(tmp_path / "missing.pt")), progress=False)
    with pytest.raises(TrainError, match="init_from"):  # before the (here absent) cache is read
        train(_config(tmp_path / "no-cache", tmp_path / "d", init_from=str(tmp_path / "missing.pt")), progress=False)


def test_mixed_precision_is_bf16_only_on_a_cpu_that_computes_it(monkeypatch):
    import facegate.models.objective as T

    assert autocast_dtype(torch.device("cuda")) is torch.float16
    monkeypatch.setattr(T, "_cpu_has_native_bf16", lambda: False)
    assert autocast_dtype(torch.device("cpu")) is None
    monkeypatch.setattr(T, "_cpu_has_native_bf16", lambda: True)
    assert autocast_dtype(torch.device("cpu")) is torch.bfloat16


def test_a_channels_last_mixed_precision_run_reloads_as_a_plain_fp32_network(tiny_cache, tmp_path):
    res = train(_config(tiny_cache, tmp_path / "run", epochs=1, steps_per_epoch=2, amp=True, channels_last=True),
                progress=False)
    assert res.net.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    reloaded = net_from_checkpoint(load_checkpoint(tmp_path / "run"))
    assert all(p.is_contiguous() for p in reloaded.parameters())
    crops = np.load(Path(tiny_cache) / "crops.npy")[:6]
    np.testing.assert_allclose(embed_crops(reloaded, crops), embed_crops(res.net, crops), atol=1e-5)


def test_time_budget_stops_cleanly_with_a_checkpoint(tiny_cache, tmp_path):
    res = train(_config(tiny_cache, tmp_path / "run", epochs=5, steps_per_epoch=3, max_minutes=1e-6),
                progress=False)
    assert res.state.step == 1 and res.state.stop_reason == "max_minutes" and not res.interrupted
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["state"]["step"] == 1 and ckpt["state"]["epoch_step"] == 1
    assert json.loads((tmp_path / "run" / "result.json").read_text())["stop_reason"] == "max_minutes"
    again = train(_config(tiny_cache, tmp_path / "run", epochs=5, steps_per_epoch=3, max_minutes=1e-6),
                  resume=True, progress=False)
    assert again.state.step == 1  # the budget is spent: nothing more to do


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, cfg: dict, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    res = train(TrainConfig.from_dict(cfg), progress=False)
    torch.save({"params": {k: v.detach() for k, v in res.model.named_parameters()},
                "step": res.state.step}, Path(folder) / f"rank{rank}.pt")


def test_ddp_two_processes_on_cpu(tiny_cache, tmp_path):
    import torch.multiprocessing as mp

    cfg = _config(tiny_cache, tmp_path / "run", steps_per_epoch=2, binary_head=0.5, distill_dlib=1.0,
                  distill_facenet=1.0, distill_facenet_mode="projection").to_dict()
    mp.spawn(_ddp_worker, args=(cfg, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["step"] == r1["step"] == 2
    assert r0["params"].keys() == r1["params"].keys()
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    torch.manual_seed(3)  # the run's seed: the initial weights
    fresh = build_net_config(TINY_NET)
    from facegate.models.network import FaceEmbeddingNet

    init = FaceEmbeddingNet(fresh).state_dict()
    assert not torch.equal(init["embedding.0.weight"], r0["params"]["net.embedding.0.weight"])
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # rank 0 only writes


# --- shipping ---------------------------------------------------------------------------------
def _export_deps() -> None:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module)


def test_cli_run_exports_fp32_and_int8_bundles_and_export_onnx_redoes_it(tiny_cache, tiny_eval, tmp_path, capsys):
    """``train run`` with export on: both ONNX bundles by facegate.export, the weights; then ``facegate export
    onnx RUN`` on the run folder writes the same bundles from the checkpoint alone."""
    _export_deps()
    from facegate.edge.cli import main as facegate
    from facegate.edge.embed import create_embedder
    from facegate.edge.embed.bundle import InputSpec, load_bundle
    from facegate.export.parity import torch_embeddings

    # a 1-step net is far from INT8-friendly: the parity floor is off, the plumbing is under test
    cfg = _config(tiny_cache, tmp_path / "run", eval_cache=str(tiny_eval), binary_head=0.5, steps_per_epoch=1,
                  export=True, export_min_int8_cosine=-1.0, bundle_version="9.9")
    recipe = tmp_path / "r.toml"
    recipe.write_text(cfg.to_toml())
    assert cli.main(["train", "run", "--config", str(recipe), "--no-progress", "--set", "seed=4"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["steps"] == 1 and 0 <= row["auc"] <= 1 and "export_error" not in row
    assert cli.main(["train", "eval", str(tmp_path / "run"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["auc"] == row["auc"] and "head_accuracy_mean" in report

    run = tmp_path / "run"
    result = json.loads((run / "result.json").read_text())
    exported = result["export"]
    assert exported["error"] is None and result["bundle"] == row["bundle"] == exported["bundle"]
    folders = [Path(b["bundle"]) for b in exported["bundles"]]
    assert folders == [run / "bundles" / "facegate-mfn-onnx-fp32", run / "bundles" / "facegate-mfn-onnx-int8"]
    assert result["bundle"] == str(folders[0])
    net = net_from_checkpoint(load_checkpoint(run))
    crops = load_eval_set(tiny_eval).crops[:5]
    ref = torch_embeddings(net, crops)
    for folder, precision in zip(folders, ("fp32", "int8")):
        manifest, model_file = load_bundle(folder)  # checksum verified
        assert manifest.name == folder.name and manifest.version == "9.9" and manifest.format == "onnx"
        assert model_file.name == f"{folder.name}.onnx" and manifest.embedding_dim == 128
        assert manifest.input == InputSpec()
        assert manifest.thresholds.default == report["threshold_far_1e-4"]
        assert manifest.thresholds.by_fmr == {"1e-3": report["threshold_far_1e-3"],
                                              "1e-4": report["threshold_far_1e-4"]}
        assert "step 1" in manifest.thresholds.source
        assert manifest.binary_head is not None and len(manifest.binary_head.weights) == 128
        ev = manifest.evaluation
        assert ev["auc"] == report["auc"] and ev["training_step"] == 1
        assert ev["training"]["steps"] == 1 and ev["training"]["losses"]["binary_head"] == 0.5
        assert ev["export"]["precision"] == precision and ev["parity"]["crops"] == 14  # the eval set's faces
        emb = create_embedder(str(folder))
        got = np.concatenate([emb.embed_prepared(list(crops[:1])), emb.embed_prepared(list(crops[1:]))])
        emb.close()
        if precision == "fp32":
            assert (np.sum(ref * got, axis=1) > 0.9999).all()
            assert "calibration" not in ev["export"]
        else:
            assert ev["export"]["calibration"]["crops"] == 22  # the whole tiny training cache
    for name in ("facegate-mfn.pt", "facegate-mfn.folded.pt"):
        assert str(run / name) in exported["weights"]
        np.testing.assert_allclose(torch_embeddings(load_weights(run / name), crops), ref, atol=1e-5)

    # the export command reads the run folder: thresholds, head, version and figures from the checkpoint,
    # calibration crops from its training cache, parity crops from its eval set
    again = tmp_path / "again"
    assert facegate(["export", "onnx", str(run), "--out", str(again), "--min-int8-cosine", "-1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["bundle"]).name for r in rows] == [f.name for f in folders]
    for r, folder in zip(rows, folders):
        mine, _ = load_bundle(r["bundle"])
        theirs, _ = load_bundle(folder)
        assert (mine.thresholds, mine.binary_head, mine.version) == (theirs.thresholds, theirs.binary_head, "9.9")
        strip = lambda ev: {k: v for k, v in ev.items() if k not in ("export", "parity")}  # noqa: E731
        assert strip(mine.evaluation) == strip(theirs.evaluation)
        assert mine.evaluation["parity"]["crops"] == theirs.evaluation["parity"]["crops"]


def test_a_refused_int8_bundle_keeps_the_fp32_one_and_the_run(tiny_cache, tiny_eval, tmp_path, monkeypatch):
    _export_deps()
    from facegate.edge.embed.bundle import load_bundle
    from facegate.export import bundles

    monkeypatch.setitem(bundles.MIN_COSINE, "int8", ("cosine_mean", 1.01))  # no INT8 model gets there
    res = train(_config(tiny_cache, tmp_path / "run", eval_cache=str(tiny_eval), steps_per_epoch=1, export=True),
                progress=False)
    assert res.bundle == tmp_path / "run" / "bundles" / "facegate-mfn-onnx-fp32"
    load_bundle(res.bundle)  # complete and verified
    assert not (tmp_path / "run" / "bundles" / "facegate-mfn-onnx-int8" / "manifest.json").exists()
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "int8" in result["export"]["error"] and "below 1.01" in result["export"]["error"]
    assert [Path(b["bundle"]).name for b in result["export"]["bundles"]] == ["facegate-mfn-onnx-fp32"]
    assert result["bundle"] == str(res.bundle) and result["steps"] == 1 and res.export == result["export"]
    assert load_checkpoint(res.checkpoint)["state"]["step"] == 1
    assert (tmp_path / "run" / "facegate-mfn.folded.pt").is_file()


def test_the_run_finds_its_exporter_by_entry_point():
    from facegate.export.run import export_run
    from facegate.models.loop import find_exporter

    assert find_exporter("onnx") is export_run
    assert find_exporter("no-such-format") is None


def test_without_an_exporter_the_run_ends_with_its_result_and_a_hint(tiny_cache, tiny_eval, tmp_path, monkeypatch,
                                                                    caplog):
    import importlib.metadata

    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [] if kw.get("group") == "facegate.exporters" else real(**kw))
    res = train(_config(tiny_cache, tmp_path / "run", eval_cache=str(tiny_eval), steps_per_epoch=1, export=True),
                progress=False)
    assert res.bundle is None and not res.interrupted and res.report is not None
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["steps"] == 1 and result["bundle"] is None and result["export"] == res.export
    assert "facegate.exporters" in res.export["error"] and res.export["bundles"] == []
    assert "pip install 'facegate[export]'" in caplog.text
    assert not (tmp_path / "run" / "bundles").exists() and load_checkpoint(res.checkpoint)["state"]["step"] == 1


def test_no_thresholds_no_bundle(tiny_cache, tmp_path, capsys):
    from facegate.edge.cli import main as facegate

    res = train(_config(tiny_cache, tmp_path / "run", steps_per_epoch=1, export=True), progress=False)
    assert res.bundle is None and res.export is None  # no eval_cache: nothing to take thresholds from
    assert json.loads((tmp_path / "run" / "result.json").read_text())["bundle"] is None
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    assert facegate(["export", "onnx", str(tmp_path / "run"), "--out", str(tmp_path / "b")]) == 2
    assert "no evaluated thresholds" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_export_min_int8_cosine_is_checked():
    with pytest.raises(TrainError, match="export_min_int8_cosine"):
        TrainConfig(cache="c", out="o", export_min_int8_cosine=1.5)


# --- the LFW-half report and the evaluation set ----------------------------------------------------
def _portrait(name: str) -> np.ndarray:
    from facegate.edge.eval.samples import sample_portrait

    try:
        return sample_portrait(name)
    except Exception as exc:  # scikit-image / matplotlib not installed
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tiny_lfw(tmp_path_factory) -> Path:
    """LFW with split A = {Alice, Carol}, split B = {Bob, Dave, Eve}; Eve's only photo holds no face."""
    root = tmp_path_factory.mktemp("lfw") / "lfw"
    astro, grace = _portrait("astronaut"), _portrait("grace_hopper")

    def photo(image: np.ndarray, centre: tuple[float, float], side: float, angle: float) -> np.ndarray:
        m = cv2.getRotationMatrix2D(centre, angle, 250.0 / side)
        m[:, 2] += (125.0 - centre[0], 125.0 - centre[1])
        return cv2.warpAffine(image, m, (250, 250), borderMode=cv2.BORDER_REPLICATE)

    a_c, g_c = (224.0, 116.0), (265.0, 231.0)
    images = {"Alice": [photo(astro, a_c, 260, 0)], "Carol": [photo(grace, g_c, 450, 0)],
              "Bob": [photo(astro, a_c, 260, 0), photo(astro, a_c, 240, 5)],
              "Dave": [photo(grace, g_c, 450, 0), photo(grace, g_c, 420, -4)],
              "Eve": [np.full((250, 250, 3), 120, np.uint8)]}
    for name, ims in images.items():
        (root / "lfw-deepfunneled" / name).mkdir(parents=True)
        for i, im in enumerate(ims, 1):
            cv2.imwrite(str(root / "lfw-deepfunneled" / name / f"{name}_{i:04d}.jpg"), im)
    lines = ["10 1"]
    for fold in range(1, 11):
        if fold <= 5:
            lines += ["Alice 1 1", "Alice 1 Carol 1"]
        else:
            lines += ["Bob 1 2", "Bob 2 Dave 1"] if fold % 2 else ["Dave 1 2", "Dave 2 Eve 1"]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def test_eval_report_is_evaluate_lfws(tiny_lfw, tmp_path, monkeypatch):
    """The same embeddings table gives the same figures through both entry points."""
    import facegate.edge.embed as embed_pkg
    from facegate.edge.eval.evaluate import cache_name, evaluate_lfw
    from facegate.edge.types import ALIGN_112

    proto = load_protocol(tiny_lfw)
    abs_paths = proto.images_of(sorted(proto.split_b))
    rels = [p.relative_to(tiny_lfw).as_posix() for p in abs_paths]
    people = [p.parent.name for p in abs_paths]
    vectors = _unit(np.random.default_rng(5), len(rels), 16)
    ok = np.array([p != "Eve" for p in people])
    es = EvalSet(np.zeros((len(rels), 112, 112, 3), np.uint8), rels, people, ok,
                 [p for p in proto.pairs if p.fold >= 6])
    ours = eval_report(es, vectors, "stub-model")

    class Stub:
        model_id, dim, crop = "stub-model", 16, ALIGN_112

        def close(self) -> None:
            pass

    monkeypatch.setattr(embed_pkg, "create_embedder", lambda *a, **k: Stub())
    np.savez(tmp_path / cache_name("stub-model", ALIGN_112, 40), paths=np.array([str(p) for p in abs_paths]), vectors=vectors,
             ok=ok, model_id=np.array("stub-model"))
    theirs = evaluate_lfw("stub", root=tiny_lfw, progress=False, cache_dir=tmp_path)
    shared = set(ours) & set(theirs) - {"seconds"}
    assert {"accuracy_mean", "accuracy_std", "auc", "eer", "tar_at_far_1e-3", "tar_at_far_1e-4",
            "threshold_far_1e-4", "failures_to_acquire", "impostor_pairs", "detector", "protocol"} <= shared
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}
    assert ours["failures_to_acquire"] == 1


def test_build_eval_set_with_the_door_detector_and_resume(tiny_lfw, tmp_path, monkeypatch):
    from facegate.models import evalset

    real = evalset._crop_one
    calls = {"n": 0}

    def crash_after_three(rel: str):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("simulated crash")
        return real(rel)

    monkeypatch.setattr(evalset, "_crop_one", crash_after_three)
    with pytest.raises(RuntimeError):
        build_eval_set(tmp_path / "es", root=tiny_lfw, progress=False, save_every=2)
    assert json.loads((tmp_path / "es" / "progress.json").read_text())["done"] == 2
    monkeypatch.setattr(evalset, "_crop_one", real)
    es = build_eval_set(tmp_path / "es", root=tiny_lfw, progress=False, save_every=2)
    assert es.people == ["Bob", "Bob", "Dave", "Dave", "Eve"]
    assert es.ok.tolist() == [True, True, True, True, False]
    assert es.crops.shape == (5, 112, 112, 3) and es.crops[:4].std() > 10
    assert len(es.pairs) == 10 and {p.fold for p in es.pairs} == set(range(6, 11))
    # a complete set is loaded, not rebuilt; another LFW in the same folder is refused
    monkeypatch.setattr(evalset, "_crop_one", lambda rel: pytest.fail("rebuilt"))
    assert load_eval_set(tmp_path / "es").paths == build_eval_set(tmp_path / "es", root=tiny_lfw).paths
