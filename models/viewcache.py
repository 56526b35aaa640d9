"""Per-view crops of the prepared training images, and the teacher's embedding of exactly those views.

``facegate train prepare`` keeps every training face's landmarks and box in
its source image. A network with another input (FaceNet's Inception-ResNet
at 160 px, a compressed rung at 112 or 96 px) needs its own crop of the same
face: :func:`build_view_cache` cuts it once with the door's own function
(:func:`facegate.models.views.make_crop`) and stores it as a uint8 array.

For distillation it also stores the teacher's embedding of the teacher's
view *and of its mirror image* (``teacher.npy``, (N, 2, dim)): the student is
trained on the same face, mirrored or not, and its target is the teacher's
embedding of that very view. No other augmentation is applied, so the
student never learns from a target computed on a different image.

Folder layout: ``<out>/crops_<size>.npy`` per view, ``teacher.npy``,
``ok.npy`` (bool: the face had a detection), ``meta.json`` last. Resumable:
teacher rows are written in chunks with ``progress.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from facegate.edge.atomic import atomic_write, atomic_write_json
from facegate.edge.errors import FacegateError
from facegate.edge.imageio import load_image

from .prepare import DATA_ROOT, load_cache
from facegate.edge.types import CropSpec

from .views import make_crop, spec_dict

log = logging.getLogger(__name__)

META, PROGRESS = "meta.json", "progress.json"


class ViewCacheError(FacegateError, ValueError):
    """The view cache cannot be built or used as asked."""


@dataclass
class ViewCache:
    folder: Path
    labels: np.ndarray
    ok: np.ndarray
    teacher: np.ndarray | None  # float32 (N, 2, dim): the teacher's view, then its mirror (None: online only)
    specs: dict[int, CropSpec]
    teacher_spec: CropSpec

    def crops(self, size: int) -> np.ndarray:
        return np.load(self.folder / f"crops_{size}.npy", mmap_mode="r")


def _cut(prepared: Any, data_root: Path, spec: CropSpec, out: Path) -> np.ndarray:
    path = out / f"crops_{spec.size}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    landmarks = np.load(prepared.folder / "landmarks.npy")
    boxes = np.load(prepared.folder / "boxes.npy")
    n = len(prepared.labels)
    crops = np.zeros((n, spec.size, spec.size, 3), np.uint8)
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    t0 = time.time()
    for i in np.flatnonzero(ok):
        image = load_image(data_root / prepared.paths[i])
        crops[i] = make_crop(image, landmarks[i], boxes[i], spec)
    atomic_write(path, lambda f: np.save(f, crops))
    log.info("%s: %d crops of %s in %.0f s", path, int(ok.sum()), spec, time.time() - t0)
    return crops


@torch.no_grad()
def _teacher_rows(net: torch.nn.Module, crops: np.ndarray, rows: np.ndarray, input_spec: Any,
                  batch: int = 64) -> np.ndarray:
    from .data import preprocess

    x = np.asarray(crops[rows])
    both = np.concatenate([x, x[:, :, ::-1]])
    out = []
    for s in range(0, len(both), batch):
        out.append(net(torch.from_numpy(preprocess(both[s:s + batch], input_spec))).numpy())
    e = np.concatenate(out)
    return np.stack([e[:len(x)], e[len(x):]], axis=1)


def build_view_cache(prepared_folder: str | Path, out: str | Path, teacher_spec: CropSpec,
                     student_specs: Sequence[CropSpec], data_root: Path = DATA_ROOT, threads: int = 2,
                     chunk: int = 512) -> ViewCache:
    """Cut the teacher's and the students' views and embed the teacher's (resumable)."""
    from .facenet_import import SOURCE, load_facenet
    from .irn import FACENET_INPUT

    torch.set_num_threads(threads)
    out = Path(out)
    prepared = load_cache(prepared_folder)
    plan = {"prepared": str(Path(prepared_folder).resolve()), "teacher": SOURCE,
            "teacher_view": spec_dict(teacher_spec), "student_views": [spec_dict(s) for s in student_specs],
            "images": len(prepared.labels)}
    out.mkdir(parents=True, exist_ok=True)
    if (out / "plan.json").is_file() and json.loads((out / "plan.json").read_text()) != plan:
        raise ViewCacheError(f"{out} holds views of other images or settings; use another folder")
    atomic_write_json(out / "plan.json", plan)
    if (out / META).is_file():
        return load_view_cache(out)
    t_crops = _cut(prepared, data_root, teacher_spec, out)
    for spec in student_specs:
        if spec.size != teacher_spec.size:
            _cut(prepared, data_root, spec, out)
    landmarks = np.load(prepared.folder / "landmarks.npy")
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    n = len(ok)
    net = load_facenet()
    tpath = out / "teacher.npy"
    done = json.loads((out / PROGRESS).read_text())["done"] if (out / PROGRESS).is_file() else 0
    teacher = np.load(tpath) if done and tpath.is_file() else np.full((n, 2, net.embedding_dim), np.nan, np.float32)
    t0 = time.time()
    for s in range(done, n, chunk):
        rows = np.flatnonzero(ok[s:s + chunk]) + s
        if len(rows):
            teacher[rows] = _teacher_rows(net, t_crops, rows, FACENET_INPUT)
        atomic_write(tpath, lambda f: np.save(f, teacher))
        atomic_write_json(out / PROGRESS, {"done": min(n, s + chunk)})
        log.info("teacher views: %d / %d (%.0f s)", min(n, s + chunk), n, time.time() - t0)
    np.save(out / "labels.npy", prepared.labels)
    np.save(out / "ok.npy", ok)
    atomic_write_json(out / META, {**plan, "faces": int(ok.sum()), "teacher_seconds": round(time.time() - t0, 1)})
    return load_view_cache(out)


def write_view_cache(folder: str | Path, crops: dict[CropSpec, np.ndarray], labels: np.ndarray, ok: np.ndarray,
                     teacher: np.ndarray | None, teacher_spec: CropSpec) -> Path:
    """A complete view cache from in-memory arrays (tests, or views made elsewhere).

    ``teacher`` None: no cached targets; only an online teacher can use it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for spec, array in crops.items():
        np.save(folder / f"crops_{spec.size}.npy", np.asarray(array, np.uint8))
    np.save(folder / "labels.npy", np.asarray(labels))
    np.save(folder / "ok.npy", np.asarray(ok, bool))
    if teacher is not None:
        np.save(folder / "teacher.npy", np.asarray(teacher, np.float32))
    atomic_write_json(folder / META, {"teacher_view": spec_dict(teacher_spec),
                                      "student_views": [spec_dict(s) for s in crops if s != teacher_spec],
                                      "faces": int(np.count_nonzero(ok))})
    return folder


def load_view_cache(folder: str | Path) -> ViewCache:
    folder = Path(folder)
    if not (folder / META).is_file():
        raise ViewCacheError(f"{folder}: not a complete view cache (no {META}); run facegate train views")
    meta = json.loads((folder / META).read_text())
    specs = {d["size"]: CropSpec(**d) for d in [meta["teacher_view"], *meta["student_views"]]}
    teacher = np.load(folder / "teacher.npy") if (folder / "teacher.npy").is_file() else None
    return ViewCache(folder, np.load(folder / "labels.npy"), np.load(folder / "ok.npy"), teacher, specs,
                     CropSpec(**meta["teacher_view"]))
