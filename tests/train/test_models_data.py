"""Training data: the shared preprocessing, augmentations, P x K batches, the cache Dataset."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facegate.edge.embed.bundle import InputSpec  # noqa: E402
from facegate.models.data import (  # noqa: E402
    NO_AUGMENT,
    TRAIN_INPUT,
    AugmentConfig,
    Collate,
    FaceCropDataset,
    PKBatchSampler,
    affine,
    augment,
    centred,
    describe,
    grey,
    hflip,
    preprocess,
    split_people,
)
from facegate.models.prepare import load_cache, write_cache  # noqa: E402


def _crop(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, 112, dtype=np.float32)
    img = np.stack([base[None, :].repeat(112, 0), base[:, None].repeat(112, 1), np.full((112, 112), 60.0)], -1)
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


def test_preprocess_is_the_manifest_default_and_the_device_function():
    assert TRAIN_INPUT == InputSpec()  # what export writes into the manifest and the device reads
    crop = _crop()
    x = preprocess(crop)
    assert x.shape == (1, 3, 112, 112) and x.dtype == np.float32
    rgb = crop[..., ::-1].astype(np.float32)
    assert np.allclose(x[0], ((rgb - 127.5) / 127.5).transpose(2, 0, 1))
    from facegate.edge.embed.bundle import to_tensor

    assert np.array_equal(preprocess(np.stack([crop, crop])), to_tensor([crop, crop], InputSpec()))
    with pytest.raises(ValueError):
        preprocess(np.zeros((100, 100, 3), np.uint8))


def test_augment_is_seeded_and_keeps_the_format():
    crop = _crop()
    a = augment(crop, np.random.default_rng(1))
    b = augment(crop, np.random.default_rng(1))
    assert a.shape == crop.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert np.array_equal(augment(crop, np.random.default_rng(1), NO_AUGMENT), crop)
    outs = [augment(crop, np.random.default_rng(s)) for s in range(20)]
    assert sum(not np.array_equal(o, crop) for o in outs) >= 18


def test_each_transform():
    crop = _crop()
    assert np.array_equal(hflip(crop)[:, 0], crop[:, -1])
    g = grey(crop)
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])
    assert np.array_equal(affine(crop, (0.0, 0.0), 1.0, 0.0), crop)
    shifted = affine(crop, (3.0, 0.0), 1.0, 0.0)
    assert np.array_equal(shifted[:, 10], crop[:, 7])
    every = AugmentConfig(p_flip=1, p_affine=1, p_photometric=1, p_grey=1, p_blur=1, p_downscale=1, p_jpeg=1,
                          p_noise=1)
    out = augment(crop, np.random.default_rng(0), every)
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert np.abs(out[..., 0].astype(int) - out[..., 1]).max() <= 40  # grey, then only noise / JPEG


def test_pk_sampler_batches():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2 + [3] * 1 + [4] * 6)  # person 3 has one image: never drawn
    sampler = PKBatchSampler(labels, p=3, k=4, batches_per_epoch=6, seed=7)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6
    for batch in batches:
        assert len(batch) == 12
        people = labels[batch].reshape(3, 4)
        assert all(len(set(row)) == 1 for row in people.tolist()) and len(set(people[:, 0])) == 3
        assert 3 not in people
        for row_pos in np.asarray(batch).reshape(3, 4):
            if len(np.flatnonzero(labels == labels[row_pos[0]])) >= 4:
                assert len(set(row_pos.tolist())) == 4  # enough images: no repeats
    assert batches == list(PKBatchSampler(labels, p=3, k=4, batches_per_epoch=6, seed=7))
    sampler.set_epoch(1)
    assert list(sampler) != batches
    with pytest.raises(ValueError):
        PKBatchSampler(labels, p=5, k=2)  # only 4 people with 2+ images


def test_split_people_is_identity_disjoint():
    labels = np.repeat(np.arange(40), 3)
    train, val = split_people(labels, 0.1, seed=0)
    assert len(train) + len(val) == len(labels)
    assert not set(labels[train]) & set(labels[val]) and len(set(labels[val])) == 4


@pytest.fixture
def cache(tmp_path):
    crops = np.stack([_crop(i) for i in range(8)])
    persons = ["b", "b", "a", "a", "a", "c", "c", "d"]
    dlib = np.random.default_rng(0).normal(size=(8, 128)).astype(np.float32)
    dlib[7] = np.nan
    write_cache(tmp_path / "c", crops, persons, teachers={"dlib": dlib})
    return load_cache(tmp_path / "c")


def test_dataset_loader_and_collate(cache):
    assert cache.people == ["a", "b", "c", "d"] and cache.labels.tolist() == [1, 1, 0, 0, 0, 2, 2, 3]
    assert describe(cache)["people_with_2plus"] == 3 and describe(cache)["teacher_dlib"] == 7
    ds = FaceCropDataset(cache, augment_config=AugmentConfig(), seed=3)
    crop, label, row = ds[2]
    assert crop.shape == (112, 112, 3) and label == 0 and row == 2
    assert np.array_equal(ds[2][0], crop)  # same (seed, epoch, row): same augmentation
    ds.set_epoch(1)
    assert not np.array_equal(ds[2][0], crop)
    sampler = PKBatchSampler(ds.labels, p=2, k=2, batches_per_epoch=3, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=Collate(cache), num_workers=0)
    batches = list(loader)
    assert len(batches) == 3
    b = batches[0]
    assert b.images.shape == (4, 3, 112, 112) and b.images.dtype == torch.float32
    assert b.images.min() >= -1 and b.images.max() <= 1
    assert b.teachers["dlib"].shape == (4, 128) and b.teachers["facenet"].isnan().all()
    assert torch.equal(b.teachers["dlib"], torch.from_numpy(cache.teachers["dlib"][b.rows.numpy()]))
    plain = FaceCropDataset(cache, indices=[7])
    assert len(plain) == 1 and np.array_equal(plain[0][0], cache.crops[7])


def test_centred_teachers_lose_their_common_direction_and_keep_their_gaps():
    rng = np.random.default_rng(0)
    common = rng.standard_normal(16)
    raw = (3 * common + rng.standard_normal((200, 16))).astype(np.float32)  # every row leans one way
    raw[5] = np.nan
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    ok = np.isfinite(raw).all(axis=1)
    assert (unit[ok] @ unit[ok].T).mean() > 0.8
    c = centred(raw)
    assert np.isnan(c[5]).all() and np.isfinite(c[ok]).all()
    np.testing.assert_allclose(np.linalg.norm(c[ok], axis=1), 1.0, atol=1e-5)
    assert abs((c[ok] @ c[ok].T).mean()) < 0.05
    # the same two rows stay the nearest pair: identity is what remains
    raw[7] = raw[8] + 0.01
    c = centred(raw)
    assert np.argmax(np.delete(c[ok] @ c[8], list(np.flatnonzero(ok)).index(8))) == list(np.flatnonzero(ok)).index(7)
    assert np.isnan(centred(np.full((3, 4), np.nan))).all()


def test_collate_can_centre_the_teachers(cache):
    plain, centre = Collate(cache), Collate(cache, centre=True)
    np.testing.assert_allclose(centre.teachers["dlib"], centred(cache.teachers["dlib"]))
    assert not np.allclose(np.nan_to_num(plain.teachers["dlib"]), np.nan_to_num(centre.teachers["dlib"]))


def test_cache_pickles_without_its_memory_map(cache):
    _ = cache.crops
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._crops is None and len(pickle.dumps(cache)) < 100_000
    assert np.array_equal(clone.crops[3], cache.crops[3])
