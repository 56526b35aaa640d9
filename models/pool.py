"""Extra faces for distillation (CelebA, UTKFace), with every look-alike of an LFW split-B face dropped.

Distillation needs no identity labels: the teacher's embedding is the
target. ``celeba10k`` (numbered identities) and ``utkface8k`` (none) add
17,842 faces of all ages and skin tones to the 11,447 LFW split-A crops. They
cannot be matched to LFW by name, so the protocol
(``../shared/data/README.md``) asks for a rule by face: every image that
matches **any** split-B face under a pretrained teacher at a strict threshold
(FaceNet's FMR-1e-5 threshold on split-B impostor pairs, or stricter) is
dropped, and the list of dropped files is kept with the pool.

The pool is a view cache (:mod:`facegate.models.viewcache`) of the teacher's
view, without cached targets (an online teacher embeds each augmented view),
plus ``dropped.json``. CelebA identities keep their number (offset past the
LFW labels is the ladder's job); UTKFace faces are -1: distillation only.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from facegate.edge.atomic import atomic_write_json
from facegate.edge.errors import FacegateError
from facegate.edge.eval.metrics import threshold_at_far
from facegate.edge.types import CropSpec

log = logging.getLogger(__name__)

DROPPED = "dropped.json"
#: The protocol's strictness: FaceNet's threshold at this impostor match rate on split B.
DROP_FMR = 1e-5


class PoolError(FacegateError, ValueError):
    """The distillation pool cannot be built as asked."""


@dataclass(frozen=True)
class DropRule:
    """Faces closer than ``threshold`` (squared L2 of unit embeddings) to a split-B face are dropped."""

    threshold: float
    fmr: float
    impostor_pairs: int


def impostor_distances(emb: np.ndarray, people: Sequence[str], max_pairs: int = 20_000_000,
                       chunk: int = 512) -> np.ndarray:
    """Squared distances of every pair of faces of different people (all of them, up to ``max_pairs``)."""
    labels = np.unique(np.asarray(people), return_inverse=True)[1]
    out, total = [], 0
    for s in range(0, len(emb), chunk):
        d = 2.0 - 2.0 * emb[s:s + chunk] @ emb.T
        rows = np.arange(s, min(s + chunk, len(emb)))[:, None]
        keep = (np.arange(len(emb))[None, :] > rows) & (labels[s:s + chunk, None] != labels[None, :])
        out.append(d[keep].astype(np.float32))
        total += len(out[-1])
        if total >= max_pairs:
            break
    return np.concatenate(out)[:max_pairs]


def drop_rule(split_b: np.ndarray, people: Sequence[str], fmr: float = DROP_FMR) -> DropRule:
    """The teacher's threshold at ``fmr`` on split B's impostor pairs (strict: it admits 1 in 1/fmr)."""
    imp = impostor_distances(split_b, people)
    if len(imp) * fmr < 1:
        raise PoolError(f"{len(imp)} impostor pairs cannot support FMR {fmr:g}; need at least {int(1 / fmr)}")
    return DropRule(float(threshold_at_far(imp, fmr)), fmr, int(len(imp)))


def apply_drop_rule(pool: np.ndarray, split_b: np.ndarray, rule: DropRule,
                    chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dropped mask, nearest split-B row, its distance) for every pool embedding (unit vectors)."""
    nearest = np.zeros(len(pool), np.int64)
    dist = np.zeros(len(pool), np.float32)
    for s in range(0, len(pool), chunk):
        d = 2.0 - 2.0 * pool[s:s + chunk] @ split_b.T
        nearest[s:s + chunk] = d.argmin(axis=1)
        dist[s:s + chunk] = d[np.arange(len(d)), nearest[s:s + chunk]]
    return dist < rule.threshold, nearest, dist


def write_dropped(folder: Path, paths: Sequence[str], split_b_paths: Sequence[str], rule: DropRule,
                  dropped: np.ndarray, nearest: np.ndarray, dist: np.ndarray) -> Path:
    rows = [{"path": paths[i], "split_b_match": split_b_paths[int(nearest[i])], "distance": round(float(dist[i]), 4)}
            for i in np.flatnonzero(dropped)]
    atomic_write_json(folder / DROPPED, {"rule": f"dropped when closer than the teacher's FMR-{rule.fmr:g} threshold "
                                                 "to any LFW split-B face", "threshold": rule.threshold,
                                         "fmr": rule.fmr, "impostor_pairs": rule.impostor_pairs,
                                         "checked": int(len(paths)), "dropped": rows})
    return folder / DROPPED


def pool_images(root: Path, sources: Iterable[str]) -> tuple[list[str], np.ndarray]:
    """Relative paths and labels (CelebA identity number, or -1) of the sources' images."""
    paths, labels = [], []
    for source in sources:
        folder = root / source
        if not folder.is_dir():
            raise PoolError(f"{folder}: no such data folder")
        for p in sorted(folder.rglob("*.jpg")):
            rel = p.relative_to(root).as_posix()
            paths.append(rel)
            ident = p.parent.name
            labels.append(int(ident[2:]) if ident.startswith("id") and ident[2:].isdigit() else -1)
    return paths, np.asarray(labels, np.int64)


def build_pool(out: str | Path, eval_set: str | Path, sources: Sequence[str] = ("celeba10k", "utkface8k"),
               root: str | Path | None = None, spec: CropSpec = CropSpec("box", 160, margin=0.125),
               min_face: int = 20, threads: int = 2, batch: int = 64) -> dict:
    """Detect and crop the sources' faces, embed them and split B with FaceNet, drop look-alikes, write the pool."""
    import torch

    from facegate.edge.config import DetectorConfig
    from facegate.edge.detect import create_detector
    from facegate.edge.eval.lfw import pick_central
    from facegate.edge.imageio import load_image

    from .evalset import load_eval_set
    from .facenet_import import load_facenet
    from .ladder import embed_plain
    from .prepare import DATA_ROOT
    from .viewcache import write_view_cache
    from .views import make_crop

    torch.set_num_threads(threads)
    root = Path(root) if root else DATA_ROOT
    out = Path(out)
    paths, labels = pool_images(root, sources)
    detector = create_detector(DetectorConfig(min_face_size=min_face, threads=threads, work_face_px=min_face))
    crops = np.zeros((len(paths), spec.size, spec.size, 3), np.uint8)
    ok = np.zeros(len(paths), bool)
    t0 = time.time()
    for i, rel in enumerate(paths):
        image = load_image(root / rel)
        face = pick_central(detector.detect(image), image.shape)
        if face is not None:
            crops[i] = make_crop(image, face.landmarks, np.asarray(face.box), spec)
            ok[i] = True
        if i % 2000 == 0:
            log.info("pool: %d / %d images, %d faces (%.0f s)", i, len(paths), int(ok.sum()), time.time() - t0)
    net = load_facenet().eval()
    cpu = torch.device("cpu")
    es = load_eval_set(eval_set)
    b_rows = np.flatnonzero(es.ok)
    b_emb = embed_plain(net, es.views(spec), b_rows, cpu, batch)
    rule = drop_rule(b_emb, [es.people[i] for i in b_rows])
    p_rows = np.flatnonzero(ok)
    dropped, nearest, dist = apply_drop_rule(embed_plain(net, crops, p_rows, cpu, batch), b_emb, rule)
    write_view_cache(out, {spec: crops}, labels, ok & ~np.isin(np.arange(len(ok)), p_rows[dropped]), None, spec)
    write_dropped(out, [paths[i] for i in p_rows], [es.paths[i] for i in b_rows], rule, dropped, nearest, dist)
    summary = {"images": len(paths), "faces": int(ok.sum()), "dropped": int(dropped.sum()),
               "kept": int(ok.sum() - dropped.sum()), "threshold": rule.threshold, "fmr": rule.fmr,
               "impostor_pairs": rule.impostor_pairs, "seconds": round(time.time() - t0, 1),
               "sources": list(sources)}
    (out / "pool.json").write_text(json.dumps(summary, indent=1))
    return summary
