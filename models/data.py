"""Training data: the prepared cache as a Dataset, P x K batches, door-camera augmentations.

Crops stay BGR uint8 until the last step; :func:`preprocess` turns them into
the network's input with the *device's own* function
(:func:`facegate.edge.embed.onnx.to_tensor`) and the spec that export writes
into the bundle manifest (:data:`TRAIN_INPUT`), so training, export and the
door cannot disagree about colour order, scaling or layout.

Augmentations are numpy / OpenCV on uint8 crops (no torchvision), each drawn
from a generator seeded by (seed, epoch, image index): an epoch's samples are
the same whatever the number of loader workers, so a resumed run sees the
same data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from facegate.edge.embed.bundle import InputSpec
from facegate.edge.embed.bundle import to_tensor

from .prepare import PreparedCache, load_cache

log = logging.getLogger(__name__)

#: The network's input: RGB, (x - 127.5) / 127.5, NCHW, 112 px. Export copies it into the manifest.
TRAIN_INPUT = InputSpec(size=112, colour="rgb", layout="nchw", mean=(127.5,), std=(127.5,), dtype="float32")


def preprocess(crops: np.ndarray | Sequence[np.ndarray], spec: InputSpec = TRAIN_INPUT) -> np.ndarray:
    """BGR uint8 crops (N, H, W, 3) or one (H, W, 3) -> the network's float32 input, exactly as on the device."""
    if isinstance(crops, np.ndarray) and crops.ndim == 3:
        crops = crops[None]
    crops = list(crops)
    if crops and crops[0].shape[:2] != (spec.size, spec.size):
        raise ValueError(f"crops are {crops[0].shape[:2]}, the input spec wants {spec.size}x{spec.size}")
    return to_tensor(crops, spec)


# --- augmentation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentConfig:
    """What a door camera does to a face that a curated photo does not.

    Each ``p_*`` is the probability of one transform; ranges are uniform.
    Geometric changes stay small: crops come from the same alignment on the
    device, so only its jitter (a few pixels, a few degrees) is realistic.
    """

    p_flip: float = 0.5
    p_affine: float = 0.5
    max_shift: float = 4.0  # px
    scale: tuple[float, float] = (0.92, 1.08)
    max_rotation: float = 8.0  # degrees
    p_photometric: float = 0.8
    brightness: float = 0.2  # +- fraction of 255
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.7, 1.5)
    p_grey: float = 0.15  # IR / night mode
    p_blur: float = 0.15
    blur_sigma: tuple[float, float] = (0.4, 1.5)
    p_downscale: float = 0.15  # a face far from the camera, upsampled by the alignment
    downscale: tuple[float, float] = (0.35, 0.8)
    p_jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 90)
    p_noise: float = 0.2
    noise_sigma: tuple[float, float] = (2.0, 8.0)


NO_AUGMENT = AugmentConfig(p_flip=0, p_affine=0, p_photometric=0, p_grey=0, p_blur=0, p_downscale=0, p_jpeg=0,
                           p_noise=0)


def hflip(crop: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(crop[:, ::-1])


def affine(crop: np.ndarray, shift: tuple[float, float], scale: float, degrees: float) -> np.ndarray:
    """Rotate/scale about the centre and shift; borders replicated, as :func:`warp_face` does."""
    h, w = crop.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, scale)
    m[:, 2] += shift
    return cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def photometric(crop: np.ndarray, brightness: float, contrast: float, gamma: float) -> np.ndarray:
    """Contrast about the mean, then an additive brightness shift, then gamma; one LUT-free pass."""
    x = crop.astype(np.float32)
    x = (x - x.mean()) * contrast + x.mean() + brightness * 255.0
    x = np.clip(x, 0.0, 255.0) / 255.0
    return np.clip(np.power(x, gamma) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def grey(crop: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def blur(crop: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(crop, (0, 0), sigmaX=sigma)


def downscale(crop: np.ndarray, factor: float) -> np.ndarray:
    h, w = crop.shape[:2]
    small = cv2.resize(crop, (max(8, round(w * factor)), max(8, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg(crop: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else crop


def noise(crop: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(crop.astype(np.float32) + rng.normal(0.0, sigma, crop.shape), 0, 255).astype(np.uint8)


def augment(crop: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """One random door-camera rendering of a BGR uint8 crop (same shape and dtype)."""
    out = crop
    if rng.random() < cfg.p_flip:
        out = hflip(out)
    if rng.random() < cfg.p_affine:
        out = affine(out, tuple(rng.uniform(-cfg.max_shift, cfg.max_shift, 2)), rng.uniform(*cfg.scale),
                     rng.uniform(-cfg.max_rotation, cfg.max_rotation))
    if rng.random() < cfg.p_downscale:
        out = downscale(out, rng.uniform(*cfg.downscale))
    if rng.random() < cfg.p_blur:
        out = blur(out, rng.uniform(*cfg.blur_sigma))
    if rng.random() < cfg.p_photometric:
        out = photometric(out, rng.uniform(-cfg.brightness, cfg.brightness), rng.uniform(*cfg.contrast),
                          float(np.exp(rng.uniform(np.log(cfg.gamma[0]), np.log(cfg.gamma[1])))))
    if rng.random() < cfg.p_grey:
        out = grey(out)
    if rng.random() < cfg.p_noise:
        out = noise(out, rng.uniform(*cfg.noise_sigma), rng)
    if rng.random() < cfg.p_jpeg:  # last: the camera / transport compresses what the sensor saw
        out = jpeg(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return np.ascontiguousarray(out, dtype=np.uint8)


# --- the dataset --------------------------------------------------------------------------
class FaceCropDataset(Dataset):
    """Rows of a prepared cache: (BGR uint8 crop, label, row index), optionally augmented.

    ``indices`` selects rows (e.g. a training or validation split of people);
    items are addressed by position in ``indices``. Teacher embeddings are
    looked up per batch by row index (:func:`collate`), not per item.
    """

    def __init__(self, cache: PreparedCache | str | Path, indices: Sequence[int] | None = None,
                 augment_config: AugmentConfig | None = None, seed: int = 0) -> None:
        self.cache = cache if isinstance(cache, PreparedCache) else load_cache(cache)
        self.indices = np.arange(len(self.cache)) if indices is None else np.asarray(indices, np.int64)
        self.augment_config = augment_config
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """New augmentations each epoch, the same ones for the same epoch (resume)."""
        self.epoch = int(epoch)

    @property
    def labels(self) -> np.ndarray:
        return self.cache.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, int]:
        row = int(self.indices[i])
        crop = np.array(self.cache.crops[row])  # copy out of the memory map
        if self.augment_config is not None:
            crop = augment(crop, np.random.default_rng([self.seed, self.epoch, row]), self.augment_config)
        return crop, int(self.cache.labels[row]), row


@dataclass
class Batch:
    images: torch.Tensor  # float32 (B, 3, 112, 112), preprocessed
    labels: torch.Tensor  # int64 (B,)
    rows: torch.Tensor  # int64 (B,) rows of the cache
    teachers: dict[str, torch.Tensor]  # name -> float32 (B, dim), NaN rows where missing

    def to(self, device: torch.device | str, channels_last: bool = False) -> Batch:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return Batch(self.images.to(device, memory_format=fmt), self.labels.to(device), self.rows.to(device),
                     {k: v.to(device) for k, v in self.teachers.items()})


def centred(embeddings: np.ndarray) -> np.ndarray:
    """Unit rows minus their mean, re-normalised; NaN rows (no teacher embedding) stay NaN.

    A teacher whose embeddings all lean one way (dlib's: mean pair cosine
    0.83 on the training cache) gives a cosine loss little to learn beyond
    that common direction; centred, its pairs average a cosine near 0, like
    the student's, and what is left to copy is identity.
    """
    e = np.asarray(embeddings, np.float32)
    ok = np.isfinite(e).all(axis=1)
    out = np.full_like(e, np.nan)
    if not ok.any():
        return out
    unit = e[ok] / np.linalg.norm(e[ok], axis=1, keepdims=True)
    unit -= unit.mean(axis=0)
    out[ok] = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    return out


class Collate:
    """Stack samples into a :class:`Batch`: one vectorised :func:`preprocess`, teacher rows gathered."""

    def __init__(self, cache: PreparedCache, teachers: Sequence[str] = ("dlib", "facenet"),
                 centre: bool = False) -> None:
        missing = [t for t in teachers if t not in cache.teachers]
        if missing:
            raise ValueError(f"cache {cache.folder} has no teacher embeddings {missing}")
        self.teachers = {t: centred(cache.teachers[t]) if centre else cache.teachers[t] for t in teachers}

    def __call__(self, samples: Sequence[tuple[np.ndarray, int, int]]) -> Batch:
        crops, labels, rows = zip(*samples)
        rows_a = np.asarray(rows, np.int64)
        return Batch(torch.from_numpy(preprocess(list(crops))), torch.as_tensor(labels, dtype=torch.int64),
                     torch.from_numpy(rows_a), {k: torch.from_numpy(v[rows_a]) for k, v in self.teachers.items()})


def split_people(labels: np.ndarray, val_fraction: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions with no person in both: validation measures unseen identities."""
    people = np.unique(labels)
    rng = np.random.default_rng(seed)
    val_people = rng.choice(people, size=max(1, round(len(people) * val_fraction)), replace=False)
    is_val = np.isin(labels, val_people)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# --- P x K batches -------------------------------------------------------------------------
class PKBatchSampler(Sampler[list[int]]):
    """Batches of P people x K images each (positions into ``labels``), for online triplet mining.

    Only people with at least ``min_images`` images are drawn (a triplet
    needs a positive). People are visited in a fresh permutation per epoch,
    so each appears about equally often; a person with fewer than K images
    contributes all of them plus repeats (different augmentations of the
    same photo). Deterministic for a given (seed, epoch).
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, p: int, k: int, batches_per_epoch: int | None = None,
                 seed: int = 0, min_images: int = 2) -> None:
        if p < 2 or k < 1:
            raise ValueError(f"need P >= 2 people and K >= 1 images, got P={p}, K={k}")
        labels = np.asarray(labels)
        self.p, self.k, self.seed, self.epoch = int(p), int(k), int(seed), 0
        groups: dict[int, list[int]] = {}
        for pos, lab in enumerate(labels.tolist()):
            groups.setdefault(lab, []).append(pos)
        self.groups = [np.asarray(v, np.int64) for _, v in sorted(groups.items()) if len(v) >= min_images]
        if len(self.groups) < self.p:
            raise ValueError(f"only {len(self.groups)} people have >= {min_images} images; P = {p} is too many")
        eligible = sum(len(g) for g in self.groups)
        self.batches_per_epoch = int(batches_per_epoch or max(1, eligible // (self.p * self.k)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.groups))
        cursor = 0
        for _ in range(self.batches_per_epoch):
            if cursor + self.p > len(order):
                order, cursor = rng.permutation(len(self.groups)), 0
            batch: list[int] = []
            for g in order[cursor:cursor + self.p]:
                members = self.groups[g]
                if len(members) >= self.k:
                    pick = rng.choice(members, self.k, replace=False)
                else:
                    pick = np.concatenate([members, rng.choice(members, self.k - len(members), replace=True)])
                batch.extend(int(x) for x in pick)
            cursor += self.p
            yield batch


def describe(cache: PreparedCache) -> dict[str, Any]:
    """Counts for a training log: images, people, people usable for triplets, teacher coverage."""
    counts = np.bincount(cache.labels, minlength=len(cache.people))
    return {
        "images": len(cache),
        "people": len(cache.people),
        "people_with_2plus": int((counts >= 2).sum()),
        "images_of_2plus": int(counts[counts >= 2].sum()),
        **{f"teacher_{k}": int(np.isfinite(v).all(axis=1).sum()) for k, v in cache.teachers.items()},
    }
