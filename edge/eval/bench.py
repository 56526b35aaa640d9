"""`facegate bench`: per-stage latency and peak memory, one JSON row per
embedder and thread count.

Each (embedder, threads) runs in a fresh process so that its peak RSS is its
own. Frames are real faces (LFW when ../shared/data is there, otherwise the
public-domain astronaut portrait) placed in a 640x480 frame, as a door camera
sees them. Figures are medians over ``repeats`` runs after a warm-up.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FacegateError

log = logging.getLogger(__name__)

FRAME_W, FRAME_H = 640, 480
#: What ``facegate bench`` measures when not told: our network and the two references, each if installed.
DEFAULT_EMBEDDERS = ("facegate-irn", "facenet", "dlib")


@dataclass(frozen=True)
class Skipped:
    """An embedder that could not be built here (its extra is missing, its model unreadable): not measured."""

    embedder: str
    reason: str
    #: its measuring process died (a native crash), rather than the embedder being absent
    crashed: bool = False

    def line(self) -> str:
        return f"skipped {self.embedder}: {self.reason}"


def sample_faces(data: Path | None, count: int = 20) -> list[np.ndarray]:
    """Real face images: LFW (``--data``, ``$FACEGATE_LFW``, a checkout's shared data), else a shipped portrait."""
    from ..imageio import load_image
    from .lfw import DEFAULT_ROOT, lfw_root

    root = lfw_root(data) or DEFAULT_ROOT
    folder = root / "lfw-deepfunneled"
    if folder.is_dir():
        people = sorted(p for p in folder.iterdir() if p.is_dir())
        step = max(1, len(people) // count)
        return [load_image(sorted(p.glob("*.jpg"))[0]) for p in people[::step][:count]]
    from .samples import sample_portrait

    return [sample_portrait("astronaut")]


def in_frame(face: np.ndarray, k: int) -> np.ndarray:
    """Place a face image into a grey 640x480 frame at a position that varies with k."""
    h, w = face.shape[:2]
    scale = min(1.0, (FRAME_H - 20) / h, (FRAME_W - 20) / w)
    if scale < 1.0:
        import cv2

        face = cv2.resize(face, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        h, w = face.shape[:2]
    frame = np.full((FRAME_H, FRAME_W, 3), 96, dtype=np.uint8)
    x = (k * 97) % (FRAME_W - w + 1)
    y = (k * 53) % (FRAME_H - h + 1)
    frame[y : y + h, x : x + w] = face
    return frame


def _median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def _model_mb(embedder: object) -> float | None:
    """Size of the embedder's model file in MB (10^6 bytes), None if it has no single file."""
    path = getattr(embedder, "model_path", None)
    return round(Path(path).stat().st_size / 1e6, 3) if path and Path(path).is_file() else None


def _bench_one(embedder: str, threads: int, repeats: int, data: Path | None) -> dict:
    import cv2

    from ..align import MIN_FACE_PX, NO_QUALITY_GATE, align
    from ..pipeline import FacePipeline
    from ..detect.mtcnn import MtcnnDetector
    from ..embed import create_embedder
    from ..gallery import match_matrix

    cv2.setNumThreads(threads)
    try:
        emb = create_embedder(embedder, threads=threads)
    except Exception as exc:  # noqa: BLE001 - any failure to build it means "not measurable here"
        return {"skipped": _why(exc)}
    detector = MtcnnDetector(min_face_size=MIN_FACE_PX, threads=threads)
    frames = [in_frame(f, k) for k, f in enumerate(sample_faces(data))]
    faces = [(fr, detector.detect(fr)) for fr in frames]
    faces = [(fr, d[0]) for fr, d in faces if d]
    if not faces:
        raise FacegateError("no face found in the benchmark frames")
    rng = np.random.default_rng(0)

    def gallery(n: int) -> np.ndarray:
        g = rng.standard_normal((n, emb.dim)).astype(np.float32)
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    g1k, g100k = gallery(1_000), gallery(100_000)
    it = iter(range(10**9))

    def pick():
        return faces[next(it) % len(faces)]

    pipeline = FacePipeline(detector, emb, NO_QUALITY_GATE)

    def frame_once():
        # as the door does it: detect on a shrunk copy, cut the embedder's crop once, embed, match
        face, _ = pipeline.largest(pick()[0])
        if face is not None and face.embedding is not None:
            match_matrix(face.embedding.vector, g1k)

    q = emb.embed(*faces[0][:1], [faces[0][1]])
    row = {
        "embedder": embedder,
        "model_id": emb.model_id,
        "threads": threads,
        "frames": len(faces),
        "detect_ms": _median_ms(lambda: detector.detect(pick()[0]), repeats),
        "align_ms": _median_ms(lambda: align(*pick(), None, emb.crop), repeats),
        "embed_ms": _median_ms(lambda: emb.embed(*(lambda f: (f[0], [f[1]]))(pick())), repeats),
        "match_1k_ms": _median_ms(lambda: match_matrix(q, g1k), repeats),
        "match_100k_ms": _median_ms(lambda: match_matrix(q, g100k), max(3, repeats // 4)),
        "frame_ms": _median_ms(frame_once, repeats),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "model_mb": _model_mb(emb),
    }
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def _why(exc: BaseException) -> str:
    """One line: the message of a FacegateError/ImportError, the type too for anything else."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (FacegateError, ImportError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_bench(embedders: Sequence[str], threads: Sequence[int] = (1, 2), repeats: int = 20,
              data: Path | None = None) -> Iterator[dict | Skipped]:
    """Yield one row per (embedder, threads), each measured in its own process.

    An embedder that cannot be built here yields one :class:`Skipped` (once,
    not per thread count) and the others are still measured; a worker that
    dies (a crash in a native library) is an error, never a hang.
    """
    ctx = mp.get_context("spawn")
    for name in embedders:
        for t in threads:
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                try:
                    row = pool.submit(_bench_one, name, t, repeats, data).result()
                except BrokenProcessPool:
                    yield Skipped(name, f"its measuring process died with {t} thread(s)", crashed=True)
                    break
            if "skipped" in row:
                yield Skipped(name, row["skipped"])
                break
            yield row
