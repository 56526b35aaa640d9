"""LFW-half evaluation of a torch network through the door's own crops.

Split B (the people of folds 6-10, 6,311 images) is detected and aligned
once with facegate.edge's MTCNN (min face 40 px), :func:`pick_central` and
:func:`warp_face`: exactly what ``facegate eval lfw`` does for the reference
embedders. The 112x112 crops are cached, so an evaluation during training is
just a forward pass plus :func:`facegate.edge.evaluate.lfw_half_report`, the
same arithmetic that scored dlib and FaceNet.

The eval-set folder (numpy + JSON, no torch needed to read it):
``crops.npy`` uint8 (N, 112, 112, 3) BGR (zeros where no face was found),
``status.npy`` int8 (0 = not processed yet, 1 = face, 2 = no face / unreadable),
``landmarks.npy`` float32 (N, 5, 2) and ``boxes.npy`` float32 (N, 4) of the face in
the source image (so a network that wants another crop gets it from the same
detection: :meth:`EvalSet.views`),
``plan.json`` (paths relative to the LFW root, each one's person, the
evaluation pairs, the detector setting), ``progress.json`` (images done, for
resuming) and ``meta.json`` last, which marks the set complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from facegate.edge.align import CROP_SIZE
from facegate.edge.atomic import atomic_write, atomic_write_json
from facegate.edge.errors import FacegateError
from facegate.edge.eval.evaluate import EVAL_MIN_FACE, PROTOCOL, EmbeddingTable, lfw_half_report
from facegate.edge.eval.lfw import EVAL_FOLDS, Pair, load_protocol, pick_central

log = logging.getLogger(__name__)

EVALSET_VERSION = 2
META, PLAN, PROGRESS = "meta.json", "plan.json", "progress.json"
FACE, NO_FACE = 1, 2


class EvalSetError(FacegateError, ValueError):
    """The evaluation-set folder cannot be used as asked."""


@dataclass
class EvalSet:
    """Split B's aligned crops and the evaluation pairs; paths are relative to the LFW root."""

    crops: np.ndarray  # uint8 (N, 112, 112, 3) BGR
    paths: list[str]
    people: list[str]
    ok: np.ndarray  # bool (N,): a face was acquired
    pairs: list[Pair]  # folds 6-10
    min_face: int = EVAL_MIN_FACE
    folder: Path | None = None
    landmarks: np.ndarray | None = None  # float32 (N, 5, 2) in the source image, when the set kept them
    boxes: np.ndarray | None = None  # float32 (N, 4)

    def __len__(self) -> int:
        return len(self.paths)

    def pair_paths(self) -> list[tuple[Pair, Path, Path]]:
        """The pairs in the form :func:`facegate.edge.evaluate.pair_distances` takes."""
        return [(p, Path(_rel_path(p.name_a, p.index_a)), Path(_rel_path(p.name_b, p.index_b))) for p in self.pairs]

    @property
    def detector(self) -> str:
        return f"mtcnn(min_face_size={self.min_face})"

    def views(self, spec: Any, root: str | Path | None = None) -> np.ndarray:
        """Every face cut again from its source image as ``spec`` (a crop spec) asks, from the same detection.

        The 112 px template crop is ``crops``; a network with another input
        (size, margin) is evaluated on exactly the faces the others were.
        Rows without a face stay zero.
        """
        from facegate.edge.imageio import load_image

        from facegate.edge.types import CropSpec

        from .views import make_crop

        if spec == CropSpec("align5", CROP_SIZE, 1.0):
            return np.asarray(self.crops)
        if self.landmarks is None or self.boxes is None:
            raise EvalSetError("this evaluation set kept no detections; rebuild it with facegate train eval-set")
        lfw_root = Path(root) if root is not None else load_protocol(None).root
        out = np.zeros((len(self.paths), spec.size, spec.size, 3), np.uint8)
        for i in np.flatnonzero(self.ok):
            image = load_image(lfw_root / self.paths[i])
            out[i] = make_crop(image, self.landmarks[i], self.boxes[i], spec)
        return out


def _rel_path(name: str, index: int) -> str:
    """The same relative spelling as :meth:`LfwProtocol.image_path` below the LFW root."""
    return f"lfw-deepfunneled/{name}/{name}_{index:04d}.jpg"


def write_eval_set(folder: str | Path, crops: np.ndarray, paths: Sequence[str], people: Sequence[str],
                   ok: np.ndarray, pairs: Sequence[Pair], min_face: int = EVAL_MIN_FACE) -> Path:
    """A complete eval set from in-memory arrays (tests, or crops made elsewhere)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    crops = np.asarray(crops, np.uint8)
    if crops.shape != (len(paths), CROP_SIZE, CROP_SIZE, 3) or len(people) != len(paths) or len(ok) != len(paths):
        raise EvalSetError(f"crops {crops.shape}, {len(paths)} paths, {len(people)} people, {len(ok)} ok flags differ")
    np.save(folder / "crops.npy", crops)
    status = np.where(np.asarray(ok, bool), FACE, NO_FACE).astype(np.int8)
    atomic_write(folder / "status.npy", lambda f: np.save(f, status))
    plan = _plan_dict(list(paths), list(people), list(pairs), min_face)
    atomic_write_json(folder / PLAN, plan)
    failed = int(np.count_nonzero(status != FACE))
    atomic_write_json(folder / META, {"version": EVALSET_VERSION, "fingerprint": plan["fingerprint"],
                                      "images": len(paths), "failures_to_acquire": failed})
    return folder


def _plan_dict(paths: list[str], people: list[str], pairs: list[Pair], min_face: int) -> dict[str, Any]:
    body = {"version": EVALSET_VERSION, "protocol": PROTOCOL, "min_face_size": int(min_face), "crop_size": CROP_SIZE,
            "paths": paths, "people": people,
            "pairs": [[p.fold, p.name_a, p.index_a, p.name_b, p.index_b] for p in pairs]}
    body["fingerprint"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return body


def load_eval_set(folder: str | Path, mmap: bool = True) -> EvalSet:
    folder = Path(folder)
    if not (folder / META).is_file():
        raise EvalSetError(f"{folder}: not a complete evaluation set (no {META}); "
                           "run facegate train eval-set --out FOLDER")
    plan = json.loads((folder / PLAN).read_text())
    status = np.load(folder / "status.npy")
    crops = np.load(folder / "crops.npy", mmap_mode="r" if mmap else None)
    pairs = [Pair(int(f), a, int(i), b, int(j)) for f, a, i, b, j in plan["pairs"]]
    kept = (folder / "landmarks.npy").is_file() and (folder / "boxes.npy").is_file()
    return EvalSet(crops, plan["paths"], plan["people"], status == FACE, pairs, int(plan["min_face_size"]), folder,
                   np.load(folder / "landmarks.npy") if kept else None, np.load(folder / "boxes.npy") if kept else None)


# --- building it: detection + alignment in worker processes -----------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(root: str, min_face: int) -> None:
    import cv2

    from facegate.edge.detect.mtcnn import MtcnnDetector

    cv2.setNumThreads(1)
    _WORKER.update(root=Path(root), detector=MtcnnDetector(min_face_size=min_face, threads=1))


def _crop_one(rel: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """As :func:`facegate.edge.evaluate._embed_path` up to the embedder: detect, pick the central face, warp.

    Returns the crop with the face's landmarks and box in the source image.
    """
    from facegate.edge.align import warp_face
    from facegate.edge.errors import ImageError
    from facegate.edge.imageio import load_image

    try:
        image = load_image(_WORKER["root"] / rel)
    except ImageError as exc:
        log.warning("%s: %s", rel, exc)
        return None
    face = pick_central(_WORKER["detector"].detect(image), image.shape)
    if face is None:
        return None
    return (warp_face(image, face.landmarks, CROP_SIZE), np.asarray(face.landmarks, np.float32),
            np.asarray(face.box, np.float32))


def _run(root: Path, min_face: int, rels: Sequence[str],
         workers: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    if workers <= 1:
        _init_worker(str(root), min_face)
        try:
            yield from map(_crop_one, rels)
        finally:
            _WORKER.clear()
        return
    ctx = mp.get_context("spawn")  # no forked onnxruntime / OpenCV thread pools
    with ctx.Pool(workers, initializer=_init_worker, initargs=(str(root), min_face)) as pool:
        yield from pool.imap(_crop_one, rels, chunksize=8)


def _save_progress(out: Path, crops: np.ndarray, status: np.ndarray, done: int,
                   landmarks: np.ndarray, boxes: np.ndarray) -> None:
    """Crops first, then detections and status, then the count: a crash in between only redoes some images."""
    crops.flush()
    atomic_write(out / "landmarks.npy", lambda f: np.save(f, landmarks))
    atomic_write(out / "boxes.npy", lambda f: np.save(f, boxes))
    atomic_write(out / "status.npy", lambda f: np.save(f, status))
    atomic_write_json(out / PROGRESS, {"done": done})


def build_eval_set(out: str | Path, root: str | Path | None = None, workers: int = 1, min_face: int = EVAL_MIN_FACE,
                   progress: bool = True, save_every: int = 256) -> EvalSet:
    """Detect and align every split-B image once into ``out`` (resumable; a complete set is just loaded).

    About 2 minutes for 6,311 images on a desktop core (~10 ms each
    after decoding); ``workers`` processes share the work.
    """
    out = Path(out)
    proto = load_protocol(root)
    lfw_root = proto.root
    abs_paths = proto.images_of(sorted(proto.split_b))
    rels = [p.relative_to(lfw_root).as_posix() for p in abs_paths]
    people = [p.parent.name for p in abs_paths]
    pairs = [p for p in proto.pairs if p.fold in EVAL_FOLDS]
    plan = _plan_dict(rels, people, pairs, min_face)
    out.mkdir(parents=True, exist_ok=True)
    if (out / PLAN).is_file():
        if json.loads((out / PLAN).read_text()).get("fingerprint") != plan["fingerprint"]:
            raise EvalSetError(f"{out} holds an evaluation set of other images or settings; use another folder")
        if (out / META).is_file():
            return load_eval_set(out)
    else:
        atomic_write_json(out / PLAN, plan)
    n = len(rels)
    done = json.loads((out / PROGRESS).read_text())["done"] if (out / PROGRESS).is_file() else 0
    if done and all((out / f).is_file() for f in ("crops.npy", "status.npy", "landmarks.npy", "boxes.npy")):
        crops = np.load(out / "crops.npy", mmap_mode="r+")
        status = np.load(out / "status.npy")
        landmarks, boxes = np.load(out / "landmarks.npy"), np.load(out / "boxes.npy")
        log.info("%s: resuming evaluation set at image %d of %d", out, done, n)
    else:
        done = 0
        crops = np.lib.format.open_memmap(out / "crops.npy", mode="w+", dtype=np.uint8,
                                          shape=(n, CROP_SIZE, CROP_SIZE, 3))
        status = np.zeros(n, np.int8)
        landmarks, boxes = np.zeros((n, 5, 2), np.float32), np.zeros((n, 4), np.float32)
    t0 = time.time()
    from tqdm import tqdm

    bar = tqdm(total=n, initial=done, desc="eval set (LFW split B)", unit="img", disable=not progress)
    try:
        for i, found in enumerate(_run(lfw_root, min_face, rels[done:], workers), start=done):
            if found is None:
                status[i] = NO_FACE
            else:
                crops[i], landmarks[i], boxes[i] = found
                status[i] = FACE
            bar.update()
            if (i + 1) % save_every == 0:
                _save_progress(out, crops, status, i + 1, landmarks, boxes)
    finally:
        bar.close()
    _save_progress(out, crops, status, n, landmarks, boxes)
    del crops
    failed = int(np.count_nonzero(status != FACE))
    atomic_write_json(out / META, {"version": EVALSET_VERSION, "fingerprint": plan["fingerprint"], "images": n,
                                   "failures_to_acquire": failed, "seconds_last_run": round(time.time() - t0, 1),
                                   "detector": f"mtcnn(min_face_size={min_face})"})
    log.info("%s: %d split-B crops, %d failures to acquire", out, n, failed)
    return load_eval_set(out)


# --- scoring ------------------------------------------------------------------------------
def eval_report(eval_set: EvalSet, vectors: np.ndarray, model_id: str) -> dict[str, Any]:
    """The LFW-half report of embeddings of ``eval_set``'s crops (rows not ``ok`` are ignored)."""
    table = EmbeddingTable(list(eval_set.paths), np.asarray(vectors, np.float32), eval_set.ok.copy(), model_id)
    return {"model_id": model_id, "protocol": PROTOCOL, "detector": eval_set.detector,
            **lfw_half_report(table, eval_set.people, eval_set.pair_paths())}


def binary_head_report(eval_set: EvalSet, vectors: np.ndarray, weights: np.ndarray, bias: float) -> dict[str, Any]:
    """The binary head on the folds-6-10 pairs: accuracy of P(same) > 0.5 and with a cross-validated threshold.

    A pair with a face not acquired gets P = 0 (rejected), as its distance is +inf for the embeddings.
    """
    from facegate.edge.eval import metrics

    idx = {p: i for i, p in enumerate(eval_set.paths)}
    pp = eval_set.pair_paths()
    a = np.array([idx[str(x)] for _, x, _ in pp])
    b = np.array([idx[str(y)] for _, _, y in pp])
    z = np.abs(vectors[a] - vectors[b]).astype(np.float64) @ np.asarray(weights, np.float64) + float(bias)
    prob = 1.0 / (1.0 + np.exp(-z))
    prob[~(eval_set.ok[a] & eval_set.ok[b])] = 0.0
    same = np.array([p.same for p, _, _ in pp])
    folds = np.array([p.fold for p, _, _ in pp])
    accs, thresholds = metrics.cross_validated_accuracy(1.0 - prob, same, folds)
    return {
        "head_accuracy_at_0.5": float(np.mean((prob > 0.5) == same)),
        "head_accuracy_mean": float(np.mean(accs)),
        "head_accuracy_std": float(np.std(accs)),
        "head_threshold_p": float(1.0 - np.median(thresholds)),
        "head_auc": metrics.roc_auc(1.0 - prob[same], 1.0 - prob[~same]),
    }
