"""Probe embeddings of the household: from a folder of images per person, or a guided camera session.

Probes go through the door's own pipeline (detector, alignment, quality gate,
embedder), so their scores are the door's scores. A probe folder holds one
sub-folder per person, named as enrolled; a sub-folder of someone not enrolled
is a *visitor*, whose faces are impostors against everyone.

The camera session asks each person to stand at the door and move a little
(the door sees people from several angles), shows a progress bar, and says
what is wrong with a refused frame ("too dark", "face too small").
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import FaceError, ImageError

log = logging.getLogger(__name__)

__all__ = ["IMAGE_SUFFIXES", "SESSION_PROMPTS", "ProbeSet", "capture_session", "guided_capture", "probes_from_folder"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")

#: What the session asks for, in turn, while it collects a person's frames.
SESSION_PROMPTS = (
    "look straight at the camera",
    "turn your head a little to the left",
    "turn your head a little to the right",
    "step half a step back",
    "look straight again (glasses on if you wear them, off if you had them on)",
)


@dataclass
class ProbeSet:
    """Embeddings per enrolled person, of visitors, and the images that gave none (with why)."""

    probes: dict[str, np.ndarray] = field(default_factory=dict)
    visitors: np.ndarray | None = None
    refused: list[tuple[str, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.probes.values())


def probes_from_folder(pipeline, folder: str | Path, enrolled: set[str], *,
                       progress: Callable[[int, int], None] | None = None) -> ProbeSet:
    """Embed ``folder/<person>/*`` through the pipeline; images without one usable face are listed, not fatal."""
    from ..imageio import load_image

    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder of probe images (one sub-folder per person)")
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    if not people:
        raise ImageError(f"{folder}: no sub-folders; put each person's probe images in {folder}/<name>/")
    jobs = [(p.name, f) for p in people for f in sorted(p.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    out = ProbeSet()
    found: dict[str, list[np.ndarray]] = {}
    visitors: list[np.ndarray] = []
    for k, (name, path) in enumerate(jobs, 1):
        try:
            face, _ = pipeline.embed_one(load_image(path))
            assert face.embedding is not None
            (found.setdefault(name, []) if name in enrolled else visitors).append(face.embedding.vector)
        except (FaceError, ImageError) as exc:
            out.refused.append((str(path), str(exc)))
        if progress is not None:
            progress(k, len(jobs))
    out.probes = {name: np.stack(v) for name, v in found.items()}
    out.visitors = np.stack(visitors) if visitors else None
    return out


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / max(total, 1))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def capture_session(pipeline, source, name: str, frames: int = 20, *, out: IO[str] | None = None,
                    timeout_s: float = 60.0, min_gap_s: float = 0.3, min_change: float = 0.02,
                    clock: Callable[[], float] = time.monotonic) -> tuple[np.ndarray, list[str]]:
    """Collect ``frames`` probe embeddings of ``name`` standing at the camera.

    A frame counts when it holds one face that passes the quality gate, comes
    at least ``min_gap_s`` after the last one kept, and differs from it
    (embedding distance of at least ``min_change``: twenty copies of one pose
    say no more than one). Prompts change as frames come in; a refused frame
    says why. Returns the embeddings and the reasons seen, stopping at
    ``timeout_s`` or when the source ends.
    """
    kept: list[np.ndarray] = []

    def check(face) -> str | None:
        vec = face.embedding.vector
        if kept and float(np.min(np.linalg.norm(np.stack(kept) - vec, axis=1))) < min_change:
            return "hold on: move a little (a new angle)"
        kept.append(vec)
        return None

    faces, reasons = guided_capture(pipeline, source, name, frames, check=check, out=out, timeout_s=timeout_s,
                                    min_gap_s=min_gap_s, clock=clock)
    dim = pipeline.embedder.dim
    vectors = np.stack([f.embedding.vector for f in faces]) if faces else np.zeros((0, dim), np.float32)
    return vectors, reasons


def _gate_reasons(face) -> str:
    return "; ".join(face.crop.quality.reasons) if face.crop.quality else "face not usable"


def guided_capture(pipeline, source, name: str, frames: int, *, prompts: tuple[str, ...] = SESSION_PROMPTS,
                   check: Callable[[Any], str | None] | None = None, explain: Callable[[Any], str] = _gate_reasons,
                   alone: str = "only the person calibrating, please", out: IO[str] | None = None,
                   timeout_s: float = 60.0, min_gap_s: float = 0.3,
                   clock: Callable[[], float] = time.monotonic) -> tuple[list[Any], list[str]]:
    """The guided camera session both calibration and enrollment run: ``frames`` good faces of one person.

    Each frame must hold one face passing the quality gate (``explain(face)``
    says what to change when it does not), come ``min_gap_s`` after the last
    one kept, and pass ``check(face)``, which returns why it refuses the
    frame or None to keep it. ``prompts`` are asked in turn as frames come in,
    with a progress bar. Returns the kept faces (``FaceResult``) and the
    reasons given for refused frames, stopping at ``timeout_s`` or when the
    source ends.
    """
    out = out if out is not None else sys.stderr
    kept: list[Any] = []
    reasons: list[str] = []
    last_t = -1e9
    start = clock()
    prompt = -1
    tty = hasattr(out, "isatty") and out.isatty()

    def show(msg: str) -> None:
        out.write(("\r\x1b[2K" if tty else "") + msg + ("" if tty else "\n"))
        out.flush()

    while len(kept) < frames and clock() - start < timeout_s:
        # one prompt per frame while there are prompts enough, else each prompt for a share of the frames
        step = len(kept) if frames <= len(prompts) else len(kept) * len(prompts) // frames
        step = min(step, len(prompts) - 1)
        if step != prompt:
            prompt = step
            if tty:
                out.write("\n")
            show(f"{name}: {prompts[step]}  {_bar(len(kept), frames)}")
        frame = source.read()
        if frame is None:
            break
        face, count = pipeline.largest(frame.image)
        why: str | None
        if face is None:
            why = "no face: stand in front of the camera"
        elif count > 1:
            why = f"more than one face: {alone}"
        elif face.embedding is None:
            why = explain(face)
        elif clock() - last_t < min_gap_s:
            continue
        else:
            why = check(face) if check is not None else None
            if why is None:
                kept.append(face)
                last_t = clock()
                show(f"{name}: {prompts[prompt]}  {_bar(len(kept), frames)}")
                continue
        reasons.append(why)
        show(f"{name}: {why}  {_bar(len(kept), frames)}")
    if tty:
        out.write("\n")
    out.flush()
    return kept, reasons
