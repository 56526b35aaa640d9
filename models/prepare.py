"""``facegate train prepare``: detect, align and cache every training image once.

Training must see exactly what the door sees, so every photo goes through
facegate.edge's own MTCNN detector (min face 40 px) and 5-point alignment to
the 112x112 template. The teachers' embeddings (dlib 128-d, FaceNet 512-d)
are computed from the *same* detection on the original image, so a student
crop and its teacher targets always describe the same face.

Sources, under the LFW-half protocol (``shared/data/README.md``):

- ``lfw``: LFW people of split A and Rest (never split B); the labelled
  face is the central one (:func:`facegate.edge.lfw.pick_central`).
- ``glint``: glint24 minus every person of split B, matched by normalised
  name. Its crops are already in the same template: stored as they are.
  Teachers see the crop padded by replicated borders, so their own (wider)
  crops are not clipped at the 112 px frame. Glint people who are also LFW
  people (A or Rest) share the LFW person's label.
- ``celeba``: celeba150 in-the-wild photos; the largest face is the labelled one.

The cache (one folder, numpy files, no torch needed to read it):
``crops.npy`` uint8 (N, 112, 112, 3) BGR, memory-mappable; ``labels.npy``
int64 person index; ``people.json``; ``paths.json`` (relative to the data
root); ``sources.json``; ``teacher_dlib.npy`` (N, 128) and
``teacher_facenet.npy`` (N, 512) float32, NaN rows where a teacher was
unavailable or failed; ``landmarks.npy``/``boxes.npy``/``scores.npy`` of the
detection in the source image; ``failures.json``; ``meta.json`` last, which
marks the cache complete.

The work is done in shards of ``shard_size`` images written atomically to
``shards/``; a rerun skips finished shards, and a rerun of a complete cache
does nothing. ``plan.json`` pins the image list and settings: a different
plan in the same folder is refused rather than mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import re
import shutil
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from facegate.edge.align import CROP_SIZE
from facegate.edge.atomic import atomic_path, atomic_write, atomic_write_json
from facegate.edge.errors import BackendUnavailable, FacegateError
from facegate.edge.eval.lfw import DEFAULT_ROOT as LFW_ROOT
from facegate.edge.eval.lfw import LfwProtocol, load_protocol, pick_central


log = logging.getLogger(__name__)

DATA_ROOT = LFW_ROOT.parent
SOURCES = ("lfw", "glint", "celeba")
#: Teacher name -> embedding size; a cache always holds one array per teacher.
TEACHERS = {"dlib": 128, "facenet": 512}
CACHE_VERSION = 1
META, PLAN = "meta.json", "plan.json"


class PrepareError(FacegateError, ValueError):
    """The cache folder or the sources cannot be used as asked."""


class ProtocolViolation(FacegateError, ValueError):
    """A split-B (evaluation) person would enter the training set."""


# --- names and the protocol -------------------------------------------------------
def person_key(name: str) -> str:
    """Spelling-insensitive identity key: "Robert Downey Jr." == "robert_downey_jr"."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", ascii_.lower())


def assert_disjoint_from_split_b(names: Iterable[str], split_b: Iterable[str] | None = None) -> None:
    """Raise :class:`ProtocolViolation` if any training person is an evaluation (split-B) person.

    Names are compared by :func:`person_key`, so other spellings of an LFW
    name (as in glint24) are caught too. ``split_b`` defaults to the shared
    LFW's split B.
    """
    if split_b is None:
        split_b = load_protocol().split_b
    banned = {person_key(n) for n in split_b}
    hits = sorted({n for n in names if person_key(n) in banned})
    if hits:
        shown = ", ".join(hits[:10]) + (" ..." if len(hits) > 10 else "")
        raise ProtocolViolation(f"{len(hits)} split-B (evaluation) people in the training set: {shown}")


# --- the plan ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One planned image: where it is (relative to the data root), whose it is, how to find the face."""

    path: str
    person: str
    source: str
    mode: str  # "central" (LFW) | "largest" (CelebA) | "aligned" (glint24: use as is)


@dataclass(frozen=True)
class PrepareConfig:
    out: Path
    data_root: Path = DATA_ROOT
    sources: tuple[str, ...] = SOURCES
    teachers: tuple[str, ...] = ("dlib", "facenet")
    limit: int | None = None  # at most this many images per source (whole people, seeded order)
    workers: int = 2
    min_face_size: int = 40  # the door's detector setting
    shard_size: int = 256
    seed: int = 0
    glint_pad: int = 32  # replicated border around glint crops for the teachers' detection
    progress: bool = True
    keep_shards: bool = False

    def __post_init__(self) -> None:
        bad = [s for s in self.sources if s not in SOURCES]
        if bad or not self.sources:
            raise PrepareError(f"unknown or no sources {bad or '(none)'}; choose from {', '.join(SOURCES)}")
        bad = [t for t in self.teachers if t not in TEACHERS]
        if bad:
            raise PrepareError(f"unknown teachers {bad}; choose from {', '.join(TEACHERS)}")
        if self.limit is not None and self.limit < 1:
            raise PrepareError(f"limit must be positive, got {self.limit}")
        if self.shard_size < 1 or self.workers < 1:
            raise PrepareError("shard_size and workers must be positive")


def _limit(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """At most ``limit`` items, whole people first, people in a seeded random order.

    Random people rather than the alphabetically first: a small probe then
    looks like the whole source (one person per letter range would not).
    """
    if limit is None or len(items) <= limit:
        return items
    by_person: dict[str, list[Item]] = {}
    for it in items:
        by_person.setdefault(it.person, []).append(it)
    people = sorted(by_person)
    order = np.random.default_rng(seed).permutation(len(people))
    out: list[Item] = []
    for k in order:
        out.extend(by_person[people[k]][: limit - len(out)])
        if len(out) >= limit:
            break
    return sorted(out, key=lambda it: (it.person, it.path))


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def lfw_items(proto: LfwProtocol, root: Path) -> list[Item]:
    people = proto.split_a | proto.rest
    return [Item(_rel(p, root), p.parent.name, "lfw", "central") for p in proto.images_of(people)]


def glint_items(folder: Path, proto: LfwProtocol, root: Path) -> list[Item]:
    """glint24 minus split B; people also in LFW get the LFW spelling (one label for both)."""
    lfw_names = {person_key(n): n for n in proto.all_people()}
    banned = {person_key(n) for n in proto.split_b}
    out: list[Item] = []
    dropped = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        key = person_key(d.name)
        if key in banned:
            dropped.append(d.name)
            continue
        person = lfw_names.get(key, d.name)
        files = sorted(d.glob("*.jpg"), key=lambda f: (int(f.stem) if f.stem.isdigit() else 1 << 62, f.name))
        out.extend(Item(_rel(f, root), person, "glint", "aligned") for f in files)
    log.info("glint24: dropped %d split-B people (%s)", len(dropped), ", ".join(dropped))
    return out


def celeba_items(folder: Path, root: Path) -> list[Item]:
    """CelebA identities are numbers: "celeba_id7201" never collides with an LFW name."""
    out: list[Item] = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        out.extend(Item(_rel(f, root), f"celeba_{d.name}", "celeba", "largest") for f in sorted(d.glob("*.jpg")))
    return out


def plan_items(sources: Sequence[str] = SOURCES, data_root: Path = DATA_ROOT, limit: int | None = None,
               seed: int = 0) -> list[Item]:
    """The training images of the chosen sources, in a stable order, proven free of split-B people.

    LFW is needed even without the ``lfw`` source: its split B defines
    whom glint24 must drop.
    """
    root = Path(data_root)
    try:
        proto = load_protocol(root / "lfw")
    except FileNotFoundError as exc:
        raise PrepareError(f"{exc}; it defines the evaluation people every source must exclude") from None
    folders = {"glint": root / "glint24", "celeba": root / "celeba150"}
    items: list[Item] = []
    for source in SOURCES:
        if source not in sources:
            continue
        if source in folders and not folders[source].is_dir():
            raise PrepareError(f"{folders[source]}: source {source!r} not found")
        if source == "lfw":
            found = lfw_items(proto, root)
        elif source == "glint":
            found = glint_items(folders["glint"], proto, root)
        else:
            found = celeba_items(folders["celeba"], root)
        items.extend(_limit(found, limit, seed))
    assert_disjoint_from_split_b({it.person for it in items}, proto.split_b)
    return items


# --- the per-image work (runs in worker processes) -------------------------------------
_WORKER: dict[str, Any] = {}


def probe_teachers(names: Sequence[str]) -> dict[str, str | None]:
    """model_id of each requested teacher, None (with a warning) where it is not installed."""
    from facegate.edge.embed import create_embedder

    out: dict[str, str | None] = {}
    for name in names:
        try:
            emb = create_embedder(name, threads=1)
        except BackendUnavailable as exc:
            log.warning("teacher %s unavailable, its embeddings will be NaN: %s", name, exc)
            out[name] = None
            continue
        out[name] = emb.model_id
        emb.close()
    return out


def _init_worker(data_root: str, min_face: int, teachers: Sequence[str], glint_pad: int) -> None:
    import cv2

    from facegate.edge.detect.mtcnn import MtcnnDetector
    from facegate.edge.embed import create_embedder

    cv2.setNumThreads(1)  # one process per core; no nested thread pools
    _WORKER.clear()
    _WORKER.update(root=Path(data_root), pad=int(glint_pad),
                   detector=MtcnnDetector(min_face_size=min_face, threads=1),
                   teachers={t: create_embedder(t, threads=1) for t in teachers})


def _process(job: tuple[int, str, str]) -> dict[str, Any]:
    """Detect, align and embed one planned image; never raises for a bad image."""
    import cv2

    from facegate.edge.align import warp_face
    from facegate.edge.errors import ImageError
    from facegate.edge.imageio import load_image

    index, rel, mode = job
    res: dict[str, Any] = {"index": index, "ok": False, "error": "", "crop": None, "landmarks": None,
                           "box": None, "score": math.nan, "teachers": {}}
    try:
        image = load_image(_WORKER["root"] / rel)
    except ImageError as exc:
        res["error"] = str(exc)
        return res
    detector = _WORKER["detector"]
    if mode == "aligned":
        crop = image
        if crop.shape[:2] != (CROP_SIZE, CROP_SIZE):
            crop = cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
        pad = _WORKER["pad"]
        seen = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        det = pick_central(detector.detect(seen), seen.shape)
        res.update(ok=True, crop=crop)
        if det is None:
            res["error"] = "aligned crop kept; no face found for the teachers"
    else:
        seen, pad = image, 0
        found = detector.detect(image)
        det = pick_central(found, image.shape) if mode == "central" else (found[0] if found else None)
        if det is None:
            res["error"] = "no face found"
            return res
        res.update(ok=True, crop=warp_face(image, det.landmarks, CROP_SIZE))
    if det is None:
        return res
    res["landmarks"] = np.asarray(det.landmarks, np.float32) - pad
    res["box"] = np.asarray(det.box, np.float32) - pad
    res["score"] = det.score
    for name, teacher in _WORKER["teachers"].items():
        try:
            res["teachers"][name] = teacher.embed(seen, [det])[0]
        except Exception as exc:  # one odd face must not end an hours-long run; its row stays NaN
            log.warning("%s: teacher %s failed (%s: %s)", rel, name, type(exc).__name__, exc)
    return res


def _run_jobs(jobs: Sequence[tuple[int, str, str]], cfg: PrepareConfig,
              teachers: Sequence[str]) -> Iterator[dict[str, Any]]:
    args = (str(cfg.data_root), cfg.min_face_size, tuple(teachers), cfg.glint_pad)
    if cfg.workers <= 1:
        _init_worker(*args)
        try:
            yield from map(_process, jobs)
        finally:
            _WORKER.clear()
        return
    ctx = mp.get_context("spawn")  # no forked onnxruntime / OpenCV / dlib thread pools
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=args) as pool:
        yield from pool.imap(_process, jobs, chunksize=4)


# --- shards -----------------------------------------------------------------------------
def _shard_path(folder: Path, k: int) -> Path:
    return folder / "shards" / f"{k:05d}.npz"


def _write_shard(path: Path, results: list[dict[str, Any]]) -> None:
    n = len(results)
    arrays: dict[str, np.ndarray] = {
        "index": np.array([r["index"] for r in results], np.int64),
        "ok": np.array([r["ok"] for r in results], bool),
        "crops": np.zeros((n, CROP_SIZE, CROP_SIZE, 3), np.uint8),
        "landmarks": np.full((n, 5, 2), np.nan, np.float32),
        "boxes": np.full((n, 4), np.nan, np.float32),
        "scores": np.array([r["score"] for r in results], np.float32),
        "errors": np.array([r["error"] for r in results], dtype=str),
    }
    for name, dim in TEACHERS.items():
        arrays[f"teacher_{name}"] = np.full((n, dim), np.nan, np.float32)
    for i, r in enumerate(results):
        if r["crop"] is not None:
            arrays["crops"][i] = r["crop"]
        if r["landmarks"] is not None:
            arrays["landmarks"][i] = r["landmarks"]
            arrays["boxes"][i] = r["box"]
        for name, vec in r["teachers"].items():
            arrays[f"teacher_{name}"][i] = vec
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **arrays))


# --- the cache --------------------------------------------------------------------------
def _write_tables(folder: Path, labels: np.ndarray, people: list[str], paths: list[str], sources: list[str],
                  teachers: dict[str, np.ndarray], landmarks: np.ndarray, boxes: np.ndarray,
                  scores: np.ndarray) -> None:
    n = len(labels)
    np.save(folder / "labels.npy", labels.astype(np.int64))
    np.save(folder / "landmarks.npy", landmarks.astype(np.float32).reshape(n, 5, 2))
    np.save(folder / "boxes.npy", boxes.astype(np.float32).reshape(n, 4))
    np.save(folder / "scores.npy", scores.astype(np.float32).reshape(n))
    for name, dim in TEACHERS.items():
        t = teachers.get(name)
        np.save(folder / f"teacher_{name}.npy",
                np.full((n, dim), np.nan, np.float32) if t is None else t.astype(np.float32).reshape(n, dim))
    atomic_write_json(folder / "people.json", people, indent=1)
    atomic_write_json(folder / "paths.json", paths, indent=1)
    atomic_write_json(folder / "sources.json", sources, indent=1)


def write_cache(folder: str | Path, crops: np.ndarray, persons: Sequence[str], paths: Sequence[str] | None = None,
                sources: Sequence[str] | None = None, teachers: dict[str, np.ndarray] | None = None,
                meta: dict[str, Any] | None = None) -> Path:
    """A complete cache from in-memory arrays (small sets and tests); labels follow sorted ``persons``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    crops = np.asarray(crops, np.uint8)
    if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
        raise PrepareError(f"crops must be (N, {CROP_SIZE}, {CROP_SIZE}, 3) uint8, got {crops.shape}")
    n = len(crops)
    people = sorted(set(persons))
    lookup = {p: i for i, p in enumerate(people)}
    np.save(folder / "crops.npy", crops)
    _write_tables(folder, np.array([lookup[p] for p in persons], np.int64), people,
                  list(paths) if paths is not None else [f"image_{i}" for i in range(n)],
                  list(sources) if sources is not None else ["memory"] * n, teachers or {},
                  np.full((n, 5, 2), np.nan), np.full((n, 4), np.nan), np.full(n, np.nan))
    atomic_write_json(folder / "failures.json", [], indent=1)
    atomic_write_json(folder / META, {"version": CACHE_VERSION, "images": n, "people": len(people),
                                      "crop_size": CROP_SIZE, "colour": "bgr", "layout": "nhwc", **(meta or {})},
                      indent=1)
    return folder


def _consolidate(folder: Path, items: list[Item], n_shards: int) -> tuple[int, list[dict[str, str]], dict]:
    """Merge the shards into the cache arrays; crops are streamed into a memory map."""
    oks = []
    for k in range(n_shards):
        with np.load(_shard_path(folder, k)) as z:
            oks.append(z["ok"].copy())
    n = int(sum(int(o.sum()) for o in oks))
    if n == 0:
        raise PrepareError("no face was acquired from any image; nothing to cache")
    with atomic_path(folder / "crops.npy") as tmp:  # renamed onto crops.npy only once complete
        crops = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, CROP_SIZE, CROP_SIZE, 3))
        rows: list[int] = []
        teachers: dict[str, list[np.ndarray]] = {name: [] for name in TEACHERS}
        landmarks, boxes, scores = [], [], []
        failures: list[dict[str, str]] = []
        pos = 0
        for k in range(n_shards):
            with np.load(_shard_path(folder, k)) as z:
                ok, index = z["ok"], z["index"]
                m = int(ok.sum())
                crops[pos:pos + m] = z["crops"][ok]
                pos += m
                rows.extend(index[ok].tolist())
                for name in TEACHERS:
                    teachers[name].append(z[f"teacher_{name}"][ok])
                landmarks.append(z["landmarks"][ok])
                boxes.append(z["boxes"][ok])
                scores.append(z["scores"][ok])
                failures.extend({"path": items[i].path, "error": str(e)} for i, e in zip(index[~ok], z["errors"][~ok]))
        crops.flush()
        del crops
    persons = [items[i].person for i in rows]
    people = sorted(set(persons))
    lookup = {p: i for i, p in enumerate(people)}
    tarr = {name: np.concatenate(v) for name, v in teachers.items()}
    _write_tables(folder, np.array([lookup[p] for p in persons], np.int64), people,
                  [items[i].path for i in rows], [items[i].source for i in rows], tarr,
                  np.concatenate(landmarks), np.concatenate(boxes), np.concatenate(scores))
    atomic_write_json(folder / "failures.json", failures, indent=1)
    per_source: dict[str, dict[str, int]] = {}
    for it in items:
        per_source.setdefault(it.source, {"planned": 0, "images": 0})["planned"] += 1
    src = np.array([items[i].source for i in rows])
    for s, c in per_source.items():
        sel = src == s
        c["images"] = int(sel.sum())
        c["people"] = len({persons[i] for i in np.flatnonzero(sel)})
        for name in TEACHERS:
            c[f"teacher_{name}"] = int(np.isfinite(tarr[name][sel]).all(axis=1).sum())
    return n, failures, per_source


@dataclass(frozen=True)
class PrepareReport:
    out: Path
    images: int  # rows in the cache
    people: int
    planned: int
    processed: int  # images worked on by this run (0: the cache was complete already)
    failed: int  # planned images without a usable face (not in the cache)
    seconds: float  # of this run
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    teachers: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def _fingerprint(plan: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def prepare_dataset(config: PrepareConfig) -> PrepareReport:
    """Build (or finish, or confirm) the training cache in ``config.out``."""
    t0 = time.time()
    cfg = config
    out = Path(cfg.out)
    items = plan_items(cfg.sources, cfg.data_root, cfg.limit, cfg.seed)
    if not items:
        raise PrepareError("the chosen sources hold no images")
    teacher_ids = probe_teachers(cfg.teachers)
    plan = {
        "version": CACHE_VERSION, "data_root": str(Path(cfg.data_root).resolve()), "sources": list(cfg.sources),
        "limit": cfg.limit, "seed": cfg.seed, "min_face_size": cfg.min_face_size, "glint_pad": cfg.glint_pad,
        "shard_size": cfg.shard_size, "teachers": teacher_ids, "crop_size": CROP_SIZE,
        "items": [[it.path, it.person, it.source, it.mode] for it in items],
    }
    fingerprint = _fingerprint(plan)
    out.mkdir(parents=True, exist_ok=True)
    plan_path, meta_path = out / PLAN, out / META
    if plan_path.is_file():
        old = json.loads(plan_path.read_text())
        if old.get("fingerprint") != fingerprint:
            raise PrepareError(f"{out} holds a cache of a different plan (sources, limit, teachers or data "
                               "changed); use another --out or delete that folder")
    else:
        atomic_write_json(plan_path, {"fingerprint": fingerprint, **plan}, indent=1)
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fingerprint:
            log.info("%s: complete already (%d images)", out, meta["images"])
            return PrepareReport(out, meta["images"], meta["people"], len(items), 0, meta["failed"],
                                 round(time.time() - t0, 1), meta["per_source"], meta["teachers"])

    ss = cfg.shard_size
    n_shards = math.ceil(len(items) / ss)
    done = {k for k in range(n_shards) if _shard_path(out, k).is_file()}
    jobs = [(i, items[i].path, items[i].mode)
            for k in range(n_shards) if k not in done for i in range(k * ss, min((k + 1) * ss, len(items)))]
    if done:
        log.info("%s: resuming, %d of %d shards done", out, len(done), n_shards)
    if jobs:
        from tqdm import tqdm

        live = [t for t, mid in teacher_ids.items() if mid is not None]
        bar = tqdm(total=len(items), initial=len(items) - len(jobs), desc="prepare", unit="img",
                   disable=not cfg.progress, smoothing=0.05)
        buffer: list[dict[str, Any]] = []
        try:
            for res in _run_jobs(jobs, cfg, live):
                buffer.append(res)
                bar.update()
                k = res["index"] // ss
                if res["index"] == min((k + 1) * ss, len(items)) - 1:  # last image of its shard
                    _write_shard(_shard_path(out, k), buffer)
                    buffer = []
        finally:
            bar.close()
    n, failures, per_source = _consolidate(out, items, n_shards)
    people = len(json.loads((out / "people.json").read_text()))
    report = PrepareReport(out, n, people, len(items), len(jobs), len(failures), round(time.time() - t0, 1),
                           per_source, teacher_ids)
    atomic_write_json(meta_path, {
        "version": CACHE_VERSION, "fingerprint": fingerprint, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "images": n, "people": people, "planned": len(items), "failed": len(failures),
        "crop_size": CROP_SIZE, "colour": "bgr", "layout": "nhwc",
        "detector": f"mtcnn(min_face_size={cfg.min_face_size})",
        "teachers": teacher_ids, "teacher_dims": TEACHERS, "per_source": per_source,
        "config": {k: v for k, v in plan.items() if k != "items"}, "seconds_last_run": report.seconds,
    }, indent=1)
    if not cfg.keep_shards:
        shutil.rmtree(out / "shards", ignore_errors=True)
    log.info("%s: %d images of %d people (%d failed)", out, n, people, len(failures))
    return report


# --- reading ----------------------------------------------------------------------------
@dataclass
class PreparedCache:
    """A complete cache; ``crops`` is opened lazily as a read-only memory map.

    The memory map is not pickled (a DataLoader worker reopens it), so
    passing a cache to worker processes copies only the small tables.
    """

    folder: Path
    labels: np.ndarray
    people: list[str]
    paths: list[str]
    sources: list[str]
    teachers: dict[str, np.ndarray]
    meta: dict[str, Any]
    _crops: np.ndarray | None = field(default=None, repr=False)

    @property
    def crops(self) -> np.ndarray:
        if self._crops is None:
            self._crops = np.load(self.folder / "crops.npy", mmap_mode="r")
        return self._crops

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_crops"] = None
        return state


def load_cache(folder: str | Path) -> PreparedCache:
    folder = Path(folder)
    if not (folder / META).is_file():
        raise PrepareError(f"{folder}: not a complete prepared cache (no {META}); run facegate train prepare")
    meta = json.loads((folder / META).read_text())
    labels = np.load(folder / "labels.npy")
    teachers = {name: np.load(folder / f"teacher_{name}.npy") for name in TEACHERS
                if (folder / f"teacher_{name}.npy").is_file()}
    return PreparedCache(folder, labels, json.loads((folder / "people.json").read_text()),
                         json.loads((folder / "paths.json").read_text()),
                         json.loads((folder / "sources.json").read_text()), teachers, meta)
