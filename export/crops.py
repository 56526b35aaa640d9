"""Real aligned face crops for INT8 calibration and parity checks.

Every crop comes from facegate's own pipeline (MTCNN, 5-point alignment,
112x112 BGR uint8), so calibration sees what the door will feed the model.
Sources, recognised by content:

- a prepared training cache (``facegate train prepare``): ``crops.npy`` +
  ``meta.json``, or, while it is still being prepared, its ``shards/*.npz``;
- an evaluation set (``facegate train eval-set``): ``crops.npy`` + ``status.npy``
  (only rows with a face are used);
- a ``.npy`` file of shape (N, 112, 112, 3), uint8.

Calibration should come from training data (the LFW-half protocol keeps
split B for evaluation); parity figures may use either, they tune nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import ExportError

log = logging.getLogger(__name__)

def _check(crops: np.ndarray, where: str) -> np.ndarray:
    """Square BGR uint8 crops (N, S, S, 3); the exporter checks S against the network's input."""
    if crops.ndim != 4 or crops.shape[1] != crops.shape[2] or crops.shape[3] != 3 or crops.dtype != np.uint8:
        raise ExportError(f"{where}: crops must be uint8 (N, S, S, 3), got {crops.dtype} {crops.shape}")
    return crops


def _from_shards(folder: Path, count: int | None, rng: np.random.Generator) -> np.ndarray:
    """Crops of an unfinished cache: shards in random order, a few rows of each, for diversity."""
    shards = sorted((folder / "shards").glob("*.npz"))
    if not shards:
        raise ExportError(f"{folder}: neither crops.npy nor shards/*.npz")
    want = count
    per_shard = None if want is None else max(16, -(-want // min(len(shards), 8)))
    out: list[np.ndarray] = []
    have = 0
    for k in rng.permutation(len(shards)):
        try:
            with np.load(shards[k]) as z:
                ok = np.flatnonzero(z["ok"])
                rows = ok if per_shard is None or len(ok) <= per_shard else np.sort(rng.choice(ok, per_shard, False))
                out.append(np.asarray(z["crops"][rows]))
        except (OSError, KeyError, ValueError) as exc:  # a shard being written right now
            log.debug("skipping %s (%s)", shards[k], exc)
            continue
        have += len(out[-1])
        if want is not None and have >= want:
            break
    if not out:
        raise ExportError(f"{folder}: no readable shard")
    crops = np.concatenate(out)
    return crops if want is None else crops[rng.permutation(len(crops))[:want]]


def load_crops(source: str | Path, count: int | None = None, seed: int = 0, size: int = 112) -> np.ndarray:
    """Up to ``count`` crops (all if None), drawn at random with ``seed``, as uint8 (N, S, S, 3).

    A view cache (:mod:`facegate.models.viewcache`) is read as ``crops_<size>``
    of its ``size`` (the network's input), faces only.
    """
    source = Path(source)
    rng = np.random.default_rng(seed)
    if source.is_file():
        if source.suffix != ".npy":
            raise ExportError(f"{source}: not a .npy array of crops")
        data = np.load(source, mmap_mode="r")
        ok = None
    elif (source / f"crops_{size}.npy").is_file() and (source / "ok.npy").is_file():
        data = np.load(source / f"crops_{size}.npy", mmap_mode="r")
        ok = np.load(source / "ok.npy")
    elif (source / "crops.npy").is_file():
        data = np.load(source / "crops.npy", mmap_mode="r")
        ok = np.load(source / "status.npy") == 1 if (source / "status.npy").is_file() else None
    elif source.is_dir():
        return _check(_from_shards(source, count, rng), str(source))
    else:
        raise ExportError(f"{source}: no such crops source")
    rows = np.arange(len(data)) if ok is None else np.flatnonzero(ok[: len(data)])
    order = rng.permutation(len(rows))
    if count is not None:
        order = order[:count]
    if len(order) == 0:
        raise ExportError(f"{source}: no crops to use")
    picked = rows[np.sort(order)]
    return _check(np.ascontiguousarray(data[picked]), str(source))


def calibration_and_parity(calib_source: str | Path, calib_count: int = 300, parity_count: int = 500,
                           parity_source: str | Path | None = None, seed: int = 0,
                           size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Calibration crops and parity crops (``size`` px); disjoint when they come from the same source."""
    if parity_source is None or Path(parity_source) == Path(calib_source):
        both = load_crops(calib_source, calib_count + parity_count, seed, size)
        both = both[np.random.default_rng(seed).permutation(len(both))]  # both halves spread over the source
        calib, parity = both[:calib_count], both[calib_count:]
        if len(parity) == 0:
            raise ExportError(f"{calib_source}: only {len(both)} crops, none left for the parity check")
    else:
        calib = load_crops(calib_source, calib_count, seed, size)
        parity = load_crops(parity_source, parity_count, seed, size)
    log.info("%d calibration crops from %s, %d parity crops from %s", len(calib), calib_source, len(parity),
             parity_source or calib_source)
    return calib, parity
