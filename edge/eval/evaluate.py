"""`facegate eval lfw`: the LFW-half protocol through the full device pipeline.

Every image goes through our detector, alignment and the embedder under test,
exactly as on the door. Embeddings are cached per model_id (and detector
setting), so a rerun, or a run cut short, picks up where it stopped.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from . import metrics
from ..atomic import atomic_write, atomic_write_json
from ..errors import ModelError
from ..types import CropSpec
from .lfw import EVAL_FOLDS, LfwProtocol, load_protocol, pick_central

log = logging.getLogger(__name__)

#: Smaller than the door's default: LFW faces fill about 110 of 250 px, and
#: some are smaller; the protocol should judge the model, not the size gate.
EVAL_MIN_FACE = 40
PROTOCOL = "lfw-half"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facegate" / "eval"


@dataclass
class EmbeddingTable:
    """Embeddings of image paths; ``ok`` is False where no face was acquired."""

    paths: list[str]
    vectors: np.ndarray
    ok: np.ndarray
    model_id: str

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}


# --- the per-image work, run in worker processes --------------------------------
_WORKER: dict = {}


def _init_worker(embedder: str, min_face: int) -> None:
    from ..detect.mtcnn import MtcnnDetector
    from ..embed import create_embedder

    _WORKER["detector"] = MtcnnDetector(min_face_size=min_face, threads=1)
    _WORKER["embedder"] = create_embedder(embedder, threads=1)


def _embed_path(path: str) -> tuple[str, np.ndarray | None]:
    from ..imageio import load_image

    image = load_image(path)
    face = pick_central(_WORKER["detector"].detect(image), image.shape)
    if face is None:
        return path, None
    return path, _WORKER["embedder"].embed(image, [face])[0]


def _run_jobs(embedder: str, min_face: int, paths: Sequence[str], workers: int) -> Iterator[tuple[str, np.ndarray | None]]:
    if workers <= 1:
        _init_worker(embedder, min_face)
        yield from (_embed_path(p) for p in paths)
        return
    ctx = mp.get_context("spawn")  # no forked onnxruntime / OpenCV thread pools
    with ctx.Pool(workers, initializer=_init_worker, initargs=(embedder, min_face)) as pool:
        yield from pool.imap(_embed_path, paths, chunksize=8)


def embed_paths(
    embedder: str,
    model_id: str,
    dim: int,
    paths: Sequence[str],
    cache: Path,
    min_face: int = EVAL_MIN_FACE,
    workers: int = 1,
    progress: bool = True,
    save_every: int = 250,
) -> EmbeddingTable:
    """Embeddings of ``paths``, computed once and kept in ``cache`` (.npz)."""
    done: dict[str, np.ndarray | None] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["model_id"]) == model_id:
                for p, v, ok in zip(z["paths"].tolist(), z["vectors"], z["ok"]):
                    done[p] = v if ok else None
    todo = [p for p in paths if p not in done]
    if todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"embed {model_id}", unit="img", disable=not progress, leave=False)
        for k, (p, v) in enumerate(_run_jobs(embedder, min_face, todo, workers), 1):
            done[p] = v
            bar.update()
            if k % save_every == 0:
                _save(cache, done, model_id, dim)
        bar.close()
        _save(cache, done, model_id, dim)
    vectors = np.zeros((len(paths), dim), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        if done[p] is not None:
            vectors[i], ok[i] = done[p], True
    return EmbeddingTable(list(paths), vectors, ok, model_id)


def _save(cache: Path, done: dict[str, np.ndarray | None], model_id: str, dim: int) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(done)
    vecs = np.stack([done[k] if done[k] is not None else np.zeros(dim, np.float32) for k in keys])
    ok = np.array([done[k] is not None for k in keys])
    atomic_write(cache, lambda f: np.savez(f, paths=np.array(keys), vectors=vecs, ok=ok, model_id=np.array(model_id)))


def pair_distances(table: EmbeddingTable, pairs: Sequence[tuple[object, Path, Path]]) -> np.ndarray:
    """Distance per pair; a pair with a face not acquired scores +inf (rejected)."""
    idx = table.index()
    a = np.array([idx[str(pa)] for _, pa, _ in pairs])
    b = np.array([idx[str(pb)] for _, _, pb in pairs])
    d = np.linalg.norm(table.vectors[a] - table.vectors[b], axis=1)
    d[~(table.ok[a] & table.ok[b])] = np.inf
    return d


def impostor_distances(table: EmbeddingTable, people: Sequence[str]) -> np.ndarray:
    """All distances between acquired images of different people (upper triangle)."""
    v = table.vectors[table.ok]
    labels = np.asarray(people)[table.ok]
    _, lab = np.unique(labels, return_inverse=True)
    out = []
    block = 1024
    for s in range(0, len(v), block):
        sims = v[s : s + block] @ v.T
        rows = np.arange(s, min(s + block, len(v)))[:, None]
        cols = np.arange(len(v))[None, :]
        mask = (cols > rows) & (lab[s : s + block, None] != lab[None, :])
        out.append(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims[mask])))
    return np.concatenate(out).astype(np.float64)


def genuine_distances(table: EmbeddingTable, people: Sequence[str]) -> np.ndarray:
    """All distances between acquired images of the same person."""
    v = table.vectors[table.ok]
    labels = np.asarray(people)[table.ok]
    out = []
    for name in np.unique(labels):
        m = v[labels == name]
        if len(m) > 1:
            iu = np.triu_indices(len(m), 1)
            out.append(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (m @ m.T)[iu])))
    return np.concatenate(out) if out else np.zeros(0)


def format_report(r: dict) -> str:
    """The human-readable summary of an LFW-half report (both ``eval`` commands print it)."""
    lines = [
        f"{r['model_id']} on {r['protocol']} ({r['pairs']} pairs, {r['impostor_pairs']:,} impostor pairs)",
        f"  accuracy        {100 * r['accuracy_mean']:.2f} +- {100 * r['accuracy_std']:.2f} %",
        f"  ROC AUC         {r['auc']:.4f}   EER {100 * r['eer']:.2f} %",
        f"  TAR @ FAR 1e-3  {r['tar_at_far_1e-3']:.3f}  (threshold {r['threshold_far_1e-3']:.3f})",
        f"  TAR @ FAR 1e-4  {r['tar_at_far_1e-4']:.3f}  (threshold {r['threshold_far_1e-4']:.3f})",
        f"  failures to acquire {r['failures_to_acquire']} of {r['images']} images",
    ]
    if "official_10fold_accuracy_mean" in r:
        lines.append(f"  official 10-fold accuracy {100 * r['official_10fold_accuracy_mean']:.2f} "
                     f"+- {100 * r['official_10fold_accuracy_std']:.2f} %")
    if "head_accuracy_mean" in r:
        lines.append(f"  binary head     {100 * r['head_accuracy_at_0.5']:.2f} % at P > 0.5, "
                     f"{100 * r['head_accuracy_mean']:.2f} +- {100 * r['head_accuracy_std']:.2f} % cross-validated")
    return "\n".join(lines)


def save_thresholds(report: dict, path: Path, default_fmr: str = "1e-4") -> None:
    """Merge a report's thresholds into the table the reference embedders read.

    The door's default is the threshold measured at FMR ``default_fmr``:
    a lock should rather ask for one more frame than let a stranger in.
    """
    import json

    table = json.loads(path.read_text()) if path.is_file() else {}
    table[report["embedder"]] = {
        "model_id": report["model_id"],
        "default": report[f"threshold_far_{default_fmr}"],
        "by_fmr": {k: report[f"threshold_far_{k}"] for k in ("1e-3", "1e-4")},
        "source": f"facegate eval lfw ({report['protocol']}, {report['impostor_pairs']:,} impostor pairs); "
                  f"default at FMR {default_fmr}",
    }
    atomic_write_json(path, table, indent=2, sort_keys=True)


#: The figures of a full-pipeline evaluation that a bundle's manifest keeps.
PIPELINE_FIGURES = ("protocol", "detector", "pairs", "accuracy_mean", "accuracy_std", "auc", "eer",
                    "tar_at_far_1e-3", "tar_at_far_1e-4", "threshold_far_1e-3", "threshold_far_1e-4",
                    "impostor_pairs", "genuine_pairs_all", "images", "failures_to_acquire")


def record_in_bundle(report: dict, folder: Path) -> Path:
    """Keep an artifact's own full-pipeline figures in its manifest, as ``evaluation["pipeline"]``.

    The training run's figures come from the PyTorch network; an INT8 file
    can score differently, and the manifest should say what *this* file does.
    Refused when the report is of another model file (its model_id differs).
    """
    import json

    from ..embed.bundle import MANIFEST, load_bundle

    manifest, _ = load_bundle(folder)
    if report["model_id"] != manifest.model_id:
        raise ModelError(f"{folder}: the report is of {report['model_id']}, the bundle holds {manifest.model_id}")
    data = json.loads((Path(folder) / MANIFEST).read_text())
    data.setdefault("evaluation", {})["pipeline"] = {k: report[k] for k in PIPELINE_FIGURES if k in report}
    path = Path(folder) / MANIFEST
    atomic_write_json(path, data, indent=2)
    return path


def lfw_half_report(
    table: EmbeddingTable,
    people_b: Sequence[str],
    eval_pairs: Sequence[tuple[object, Path, Path]],
    on_scores: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> dict:
    """The LFW-half figures of one embeddings table: the single place they are computed.

    ``table``'s first ``len(people_b)`` rows are split B's images (the
    person of each in ``people_b``); further rows (e.g. the official folds'
    images) are ignored except for ``eval_pairs``' look-ups. Shared by
    :func:`evaluate_lfw` and the training code's evaluation, so a trained
    network and a reference embedder are judged by identical arithmetic.
    ``on_scores(genuine, impostor)`` receives every split-B distance (reports, plots).
    """
    n_b = len(people_b)
    d = pair_distances(table, eval_pairs)
    same = np.array([p.same for p, _, _ in eval_pairs])
    folds = np.array([p.fold for p, _, _ in eval_pairs])
    accs, fold_thresholds = metrics.cross_validated_accuracy(d, same, folds)
    eer, eer_t = metrics.eer(d[same], d[~same])
    sub = EmbeddingTable(table.paths[:n_b], table.vectors[:n_b], table.ok[:n_b], table.model_id)
    impostors = impostor_distances(sub, people_b)
    all_genuine = genuine_distances(sub, people_b)
    if on_scores is not None:
        on_scores(all_genuine, impostors)
    report: dict = {
        "model_id": table.model_id,
        "pairs": int(len(d)),
        "accuracy_mean": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "accuracy_folds": [round(a, 4) for a in accs],
        "threshold_accuracy": float(np.median(fold_thresholds)),
        "auc": metrics.roc_auc(d[same], d[~same]),
        "eer": eer,
        "threshold_eer": eer_t,
        "impostor_pairs": int(len(impostors)),
        "genuine_pairs_all": int(len(all_genuine)),
        "images": n_b,
        "failures_to_acquire": int(np.count_nonzero(~sub.ok)),
    }
    # TAR over every genuine pair of split B (182,858 pairs), the FAR over every
    # impostor pair; the 1,500 matched pairs of folds 6-10 give a coarser twin.
    for far, key in ((1e-3, "1e-3"), (1e-4, "1e-4")):
        tar, t = metrics.tar_at_far(all_genuine, impostors, far)
        report[f"tar_at_far_{key}"] = tar
        report[f"threshold_far_{key}"] = t
        report[f"tar_pairs_at_far_{key}"] = metrics.tar_at_far(d[same], impostors, far)[0]
    return report


def cache_name(model_id: str, crop: CropSpec, min_face: int) -> str:
    """The embedding cache's file: the same weights on another crop are another embedding."""
    return f"lfw-{model_id}-{crop.kind}{crop.size}-{crop.face_scale:g}-{crop.margin:g}-min{min_face}.npz"


def evaluate_lfw(
    embedder: str | None = None,
    root: str | Path | None = None,
    workers: int = 1,
    min_face: int = EVAL_MIN_FACE,
    official: bool = False,
    progress: bool = True,
    cache_dir: Path | None = None,
    log_fn: Callable[[str], None] | None = None,
    on_scores: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> dict:
    """Run the LFW-half protocol; returns the figures as one JSON-able dict (default: the door's embedder)."""
    from ..embed import DEFAULT_EMBEDDER, create_embedder

    embedder = embedder or DEFAULT_EMBEDDER
    t0 = time.time()
    proto: LfwProtocol = load_protocol(root)
    probe = create_embedder(embedder, threads=1)
    model_id, dim = probe.model_id, probe.dim
    crop = probe.crop
    probe.close()
    split_b = sorted(proto.split_b)
    paths_b = proto.images_of(split_b)
    people_b = [p.parent.name for p in paths_b]
    eval_pairs = proto.pair_paths(EVAL_FOLDS)
    wanted = [str(p) for p in paths_b]
    if official:
        extra = {str(x) for _, a, b in proto.pair_paths(tuple(range(1, 11))) for x in (a, b)}
        wanted += sorted(extra - set(wanted))
    cache = (cache_dir or cache_root()) / cache_name(model_id, crop, min_face)
    table = embed_paths(embedder, model_id, dim, wanted, cache, min_face, workers, progress)

    report: dict = {
        "model_id": model_id,
        "embedder": embedder,
        "protocol": PROTOCOL,
        "detector": f"mtcnn(min_face_size={min_face})",
        **lfw_half_report(table, people_b, eval_pairs, on_scores),
    }
    if official:
        all_pairs = proto.pair_paths(tuple(range(1, 11)))
        d10 = pair_distances(table, all_pairs)
        accs10, _ = metrics.cross_validated_accuracy(
            d10, np.array([p.same for p, _, _ in all_pairs]), np.array([p.fold for p, _, _ in all_pairs])
        )
        report["official_10fold_accuracy_mean"] = float(np.mean(accs10))
        report["official_10fold_accuracy_std"] = float(np.std(accs10))
    report["seconds"] = round(time.time() - t0, 1)
    return report
