"""The background impostor set shipped in each model bundle: strangers' embeddings, no images.

A household has a handful of people, far too few impostor comparisons to
support a door's false-match target (1e-4 needs about 30,000 with no error).
So every bundle carries embeddings of people the model never trained on: LFW
split B of the LFW-half protocol (../shared/data/README.md), computed by our
own detector, alignment and this bundle's embedder (the evaluation's
:func:`~facegate.edge.eval.evaluate.embed_paths`, so they are exactly what the
door would compute). One image per person by default: each background row is
then a different person, so the comparisons are as independent as a stranger
at the door. Stored as float16 (L2-normalised again on load) in
``background.npz``, listed with its sha256 in the bundle's manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, atomic_write_json
from ..errors import BundleError, ChecksumError, ModelError

log = logging.getLogger(__name__)

#: The file in a bundle folder and the manifest key that describes it.
BACKGROUND_FILE = "background.npz"
MANIFEST_KEY = "background"
BUILD_COMMAND = "facegate calibrate background --embedder {name}"


@dataclass(frozen=True)
class BackgroundSet:
    """Strangers' embeddings for one model: (n, dim) float32, L2-normalised, one row per face."""

    vectors: np.ndarray
    model_id: str
    people: int
    source: str

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _write_npz(f, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` without the time stamps: the same embeddings give the same file (and sha256),
    so rebuilding a bundle's set shows whether it changed."""
    import io
    import zipfile

    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue())


def load_background(folder: str | Path, model_id: str | None = None) -> BackgroundSet | None:
    """The bundle's background set, checked against its manifest; None when the bundle has none.

    A file that does not match the manifest's sha256, or embeddings of another
    model, are refused: they would calibrate the wrong network.
    """
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{folder}: unreadable manifest ({exc})") from None
    entry = manifest.get(MANIFEST_KEY)
    if not entry:
        return None
    path = folder / str(entry.get("file", BACKGROUND_FILE))
    if not path.is_file():
        raise BundleError(f"{path}: the manifest lists a background set but the file is missing")
    if _sha256(path) != entry.get("sha256"):
        raise ChecksumError(f"{path}: sha256 does not match the manifest; rebuild it with "
                            + BUILD_COMMAND.format(name=folder.name))
    with np.load(path, allow_pickle=False) as z:
        vectors = z["vectors"].astype(np.float32)
        stored_id = str(z["model_id"])
    if model_id is not None and stored_id != model_id:
        raise ModelError(f"{path}: background embeddings of {stored_id}, not {model_id}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if vectors.ndim != 2 or not np.all(np.isfinite(vectors)) or np.any(norms < 0.5):
        raise BundleError(f"{path}: background embeddings are not unit vectors")
    return BackgroundSet(vectors / norms, stored_id, int(entry.get("people", len(vectors))),
                         str(entry.get("source", "")))


def pick_images(people: list[str], images_of, per_person: int) -> list[Path]:
    """The first ``per_person`` images (sorted) of each person: a stable, documented choice."""
    out: list[Path] = []
    for name in sorted(people):
        out.extend(images_of([name])[:per_person])
    return out


def build_background(
    embedder: str,
    *,
    lfw_root: str | Path | None = None,
    per_person: int = 1,
    workers: int = 1,
    progress: bool = False,
    cache_dir: Path | None = None,
) -> dict:
    """Embed LFW split B (never trained on) with ``embedder`` and store it in that bundle's folder.

    Returns the manifest entry written. Embeddings go through the evaluation's
    cache, so a bundle already evaluated on LFW-half costs nothing to build.
    """
    from ..embed import create_embedder, resolve_bundle
    from ..eval.evaluate import EVAL_MIN_FACE, cache_name, cache_root, embed_paths
    from ..eval.lfw import load_protocol

    folder = resolve_bundle(embedder)
    if folder is None:
        raise ModelError(f"{embedder!r} is not a model bundle: a background set lives in a bundle folder")
    if per_person < 1:
        raise ValueError(f"per_person must be >= 1, got {per_person}")
    probe = create_embedder(str(folder), threads=1)
    model_id, dim, crop = probe.model_id, probe.dim, probe.crop
    probe.close()
    proto = load_protocol(lfw_root)
    people = sorted(proto.split_b)
    paths = pick_images(people, proto.images_of, per_person)
    cache = (cache_dir or cache_root()) / cache_name(model_id, crop, EVAL_MIN_FACE)
    table = embed_paths(str(folder), model_id, dim, [str(p) for p in paths], cache, EVAL_MIN_FACE,
                        workers, progress)
    vectors = table.vectors[table.ok].astype(np.float16)
    acquired_people = len({Path(p).parent.name for p, ok in zip(table.paths, table.ok) if ok})
    path = folder / BACKGROUND_FILE
    atomic_write(path, lambda f: _write_npz(f, vectors=vectors, model_id=np.array(model_id)))
    entry = {
        "file": BACKGROUND_FILE,
        "sha256": _sha256(path),
        "model_id": model_id,
        "people": acquired_people,
        "embeddings": int(len(vectors)),
        "dtype": "float16",
        "source": f"LFW split B of the lfw-half protocol (people of pairs.txt folds 6-10, never trained on), "
                  f"first {per_person} image(s) per person, through mtcnn(min_face_size={EVAL_MIN_FACE}) "
                  f"and this bundle; {int(np.count_nonzero(~table.ok))} image(s) without a face left out",
        "built_by": BUILD_COMMAND.format(name=folder.name),
    }
    manifest_path = folder / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data[MANIFEST_KEY] = entry
    atomic_write_json(manifest_path, data, indent=2)
    log.info("background set of %s: %d embeddings of %d people in %s", model_id, len(vectors), acquired_people, path)
    return entry
