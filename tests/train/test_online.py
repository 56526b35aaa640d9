"""Online distillation: one augmented view for teacher and student; a run packed to travel and back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facegate.edge.types import CropSpec  # noqa: E402
from facegate.models.irn import IRNConfig, InceptionResNetV1  # noqa: E402
from facegate.models.ladder import (  # noqa: E402
    CHECKPOINT, FORMAT, LadderConfig, LadderError, load_ladder_checkpoint, train_rung)
from facegate.models.online import OnlineAugment, augment, network_input, plain  # noqa: E402
from facegate.models.pack import dequantize_state, join, pack, quantize_state, slim, unpack  # noqa: E402
from facegate.models.viewcache import load_view_cache, write_view_cache  # noqa: E402

SPEC = CropSpec("box", 96, margin=0.125)
NONE = OnlineAugment(p_affine=0, p_photometric=0, p_grey=0, p_blur=0)


def _crops(n: int = 4, size: int = 96) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8))


def test_augment_with_nothing_switched_on_is_the_plain_view_mirrored_where_asked():
    x, flips = _crops(), torch.tensor([True, False, True, False])
    gen = torch.Generator().manual_seed(0)
    out = augment(x, flips, gen, NONE)
    assert torch.equal(out, plain(x, flips))
    assert torch.equal(out[0], plain(x[:1])[0].flip(2))  # the mirror is the width axis
    assert torch.equal(plain(x)[:, 0], x[..., 2].float())  # BGR in, RGB out


def test_augment_changes_faces_within_range_and_grey_means_equal_channels():
    x, flips = _crops(16), torch.zeros(16, dtype=torch.bool)
    out = augment(x, flips, torch.Generator().manual_seed(1))
    assert out.shape == (16, 3, 96, 96)
    assert out.min() >= 0 and out.max() <= 255
    assert not torch.equal(out, plain(x))
    grey = augment(x, flips, torch.Generator().manual_seed(1), OnlineAugment(p_grey=1.0))
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    again = augment(x, flips, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # same seed, same batch: a resumed run sees the same views


def test_a_smaller_student_gets_the_same_face_resized_and_scaled_as_facenet():
    rgb = plain(_crops(2))
    inp = network_input(rgb, 64)
    assert inp.shape == (2, 3, 64, 64)
    assert float(inp.min()) >= -127.5 / 128 - 1e-6 and float(inp.max()) <= 127.5 / 128 + 1e-6


def test_int8_weights_keep_the_network_and_slim_parts_join_back(tmp_path):
    net = InceptionResNetV1(IRNConfig((1, 1, 1), 96)).eval()
    q = InceptionResNetV1(IRNConfig((1, 1, 1), 96)).eval()
    q.load_state_dict(dequantize_state(quantize_state(net.state_dict())))
    x = network_input(plain(_crops(4)), 96)
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(net(x), q(x))
    assert float(cos.min()) > 0.99
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": FORMAT, "irn": net.config.to_dict(), "state": net.state_dict(), "optimizer": {},
                "step": 3, "seconds": 1.0, "evals": []}, run / CHECKPOINT)
    parts = slim(run, tmp_path / "out" / "r.pt", part_mb=1.0)
    assert len(parts) > 1 and all(p.stat().st_size <= 1_000_000 for p in parts)
    back = load_ladder_checkpoint(join(parts[0], tmp_path / "joined"))
    assert "optimizer" not in back and back["step"] == 3
    for k, v in net.state_dict().items():
        assert torch.allclose(v.float(), back["state"][k], atol=1e-2, rtol=1e-2), k


@pytest.fixture(scope="module")
def packed_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A tiny view cache without cached targets and a teacher run, packed and unpacked again."""
    tmp = tmp_path_factory.mktemp("packed")
    rng = np.random.default_rng(2)
    n = 16
    import cv2

    small = rng.integers(0, 255, (n, 12, 12, 3), dtype=np.uint8)  # smooth images, as faces are
    crops = np.stack([cv2.resize(c, (96, 96), interpolation=cv2.INTER_CUBIC) for c in small])
    views = write_view_cache(tmp / "views", {SPEC: crops}, np.repeat(np.arange(8), 2), np.ones(n, bool), None, SPEC)
    teacher = InceptionResNetV1(IRNConfig((1, 1, 1), 96))
    (tmp / "teacher").mkdir()
    torch.save({"format": FORMAT, "irn": teacher.config.to_dict(), "state": teacher.state_dict(),
                "config": {"name": "t"}}, tmp / "teacher" / CHECKPOINT)
    meta = pack(views, tmp / "teacher", tmp / "pack", quality=90)
    assert meta["faces"] == n and meta["teacher_int8_cosine_min"] > 0.99
    unpack(tmp / "pack", tmp / "views2", tmp / "teacher2")
    return tmp / "views2", tmp / "teacher2", tmp


def test_unpacked_views_are_the_packed_faces_and_carry_no_cached_targets(packed_run):
    views, _, tmp = packed_run
    vc = load_view_cache(views)
    original = load_view_cache(tmp / "views")
    assert vc.teacher is None and vc.teacher_spec == SPEC
    assert np.array_equal(vc.labels, original.labels)
    err = np.abs(vc.crops(96).astype(int) - original.crops(96).astype(int)).mean()
    assert 0 < err < 4  # lossy, but the same faces


def test_an_online_rung_with_augmentation_and_held_out_people_trains_without_an_eval_set(packed_run, tmp_path):
    views, teacher, _ = packed_run
    cfg = LadderConfig(views=str(views), eval_set="", out=str(tmp_path / "r"), repeats=(1, 1, 1), input_size=80,
                       init_from=str(teacher), teacher=str(teacher), augment=True, holdout_people=0.25,
                       p=2, k=2, extra=2, max_steps=3, threads=1, bf16=False, warmup_steps=0, device="cpu")
    last = train_rung(cfg)
    assert last["step"] == 3 and last["holdout_faces"] == 4  # 2 of 8 people, 2 faces each
    assert -1.0 <= last["holdout_cosine"] <= 1.0
    ckpt = load_ladder_checkpoint(tmp_path / "r")
    assert ckpt["crop"]["size"] == 80 and ckpt["crop"]["kind"] == "box"  # the teacher's view at the rung's size
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval" in r for r in rows)


def test_augmentation_without_an_online_teacher_is_refused():
    with pytest.raises(LadderError, match="online teacher"):
        LadderConfig(augment=True)
    with pytest.raises(LadderError, match="device"):
        LadderConfig(device="tpu")


def test_cached_views_without_targets_need_an_online_teacher(packed_run, tmp_path):
    views, _, _ = packed_run
    cfg = LadderConfig(views=str(views), eval_set="", out=str(tmp_path / "r"), repeats=(1, 1, 1), input_size=96,
                       init_from="facenet", max_steps=1, device="cpu", p=2, k=2)
    with pytest.raises(LadderError, match="teacher.npy"):
        train_rung(cfg)


def test_a_pool_adds_faces_for_distillation_only_and_needs_an_online_teacher(packed_run, tmp_path):
    views, teacher, _ = packed_run
    rng = np.random.default_rng(5)
    pool = write_view_cache(tmp_path / "pool", {SPEC: rng.integers(0, 255, (6, 96, 96, 3), dtype=np.uint8)},
                            np.full(6, -1), np.ones(6, bool), None, SPEC)
    with pytest.raises(LadderError, match="online teacher"):
        LadderConfig(pool=str(pool))
    cfg = LadderConfig(views=str(views), eval_set="", out=str(tmp_path / "r"), repeats=(1, 1, 1), input_size=80,
                       init_from=str(teacher), teacher=str(teacher), pool=str(pool), p=2, k=2, extra=20,
                       max_steps=1, threads=1, bf16=False, device="cpu", eval_at_start=False)
    assert train_rung(cfg)["step"] == 1  # 20 extras from 16 labelled + 6 pooled faces: the pool is drawn from


def test_a_continuation_draws_new_batches_but_keeps_its_parents_held_out_people():
    from facegate.models.ladder import _Batches

    labels = np.repeat(np.arange(40), 3)
    ok = np.ones(len(labels), bool)
    parent = _Batches(labels, ok, LadderConfig(holdout_people=0.1, p=4, k=2, extra=2, seed=0))
    child = _Batches(labels, ok, LadderConfig(holdout_people=0.1, p=4, k=2, extra=2, seed=1, holdout_seed=0))
    reseeded = _Batches(labels, ok, LadderConfig(holdout_people=0.1, p=4, k=2, extra=2, seed=1))
    assert np.array_equal(parent.holdout, child.holdout)
    assert not np.array_equal(parent.holdout, reseeded.holdout)
    assert not np.array_equal(parent(0)[0], child(0)[0])
    assert not np.isin(child(5)[0], child.holdout).any()


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parents[2] / "models" / "recipes" / "ladder").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_every_shipped_ladder_recipe_is_a_valid_config(recipe):
    cfg = LadderConfig.from_toml(recipe)
    assert cfg.name.startswith("facegate-irn") and cfg.max_minutes > 0
