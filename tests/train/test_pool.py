"""The distillation pool: any face that matches an LFW split-B face under the teacher is dropped, and listed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facegate.models.pool import (DROPPED, PoolError, apply_drop_rule, drop_rule, impostor_distances,
                                  pool_images, write_dropped)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture()
def split_b():
    """200 people x 3 faces: each person's faces close to a random centre in the first 64 of 128 dimensions."""
    rng = np.random.default_rng(0)
    centres = _unit(np.concatenate([rng.standard_normal((200, 64)), np.zeros((200, 64))], axis=1))
    faces = _unit(np.repeat(centres, 3, axis=0) + 0.03 * rng.standard_normal((600, 128)))
    people = [f"P{i // 3}" for i in range(600)]
    return faces, people, centres, rng


def test_the_threshold_admits_the_asked_share_of_split_b_impostor_pairs(split_b):
    faces, people, _, _ = split_b
    rule = drop_rule(faces, people, fmr=1e-3)
    imp = impostor_distances(faces, people)
    assert rule.impostor_pairs == len(imp) == 600 * 597 // 2  # every pair of different people
    assert np.mean(imp < rule.threshold) <= 1e-3


def test_look_alikes_of_split_b_faces_are_dropped_and_listed_strangers_kept(split_b, tmp_path):
    faces, people, centres, rng = split_b
    rule = drop_rule(faces, people, fmr=1e-3)
    lookalikes = _unit(centres[:20] + 0.03 * rng.standard_normal((20, 128)))  # new photos of split-B people
    strangers = _unit(np.concatenate([np.zeros((50, 64)), rng.standard_normal((50, 64))], axis=1))  # unlike all
    dropped, nearest, dist = apply_drop_rule(np.concatenate([lookalikes, strangers]), faces, rule)
    assert dropped[:20].all() and not dropped[20:].any()
    assert all(people[nearest[i]] == f"P{i}" for i in range(20))  # matched to the right split-B person
    paths = [f"celeba10k/id{i}/x.jpg" for i in range(70)]
    listed = json.loads(write_dropped(tmp_path, paths, [f"lfw/{p}.jpg" for p in people], rule, dropped,
                                      nearest, dist).read_text())
    assert (tmp_path / DROPPED).is_file() and listed["checked"] == 70
    assert [r["path"] for r in listed["dropped"]] == paths[:20]
    assert listed["dropped"][3]["split_b_match"] == "lfw/P3.jpg"


def test_too_few_impostor_pairs_cannot_support_a_strict_threshold(split_b):
    faces, people, _, _ = split_b
    with pytest.raises(PoolError, match="cannot support"):
        drop_rule(faces[:30], people[:30], fmr=1e-5)


def test_pool_images_keep_celeba_identities_and_mark_utkface_unlabelled(tmp_path):
    (tmp_path / "celeba10k" / "id12").mkdir(parents=True)
    (tmp_path / "celeba10k" / "id12" / "000001.jpg").write_bytes(b"x")
    (tmp_path / "utkface8k").mkdir()
    (tmp_path / "utkface8k" / "30_1_0_2017.jpg.chip.jpg").write_bytes(b"x")
    paths, labels = pool_images(tmp_path, ["celeba10k", "utkface8k"])
    assert paths == ["celeba10k/id12/000001.jpg", "utkface8k/30_1_0_2017.jpg.chip.jpg"]
    assert labels.tolist() == [12, -1]
    with pytest.raises(PoolError, match="no such"):
        pool_images(tmp_path, ["glint"])
