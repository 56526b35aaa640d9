"""Enrolling a person from photos (a list or a folder) or a guided camera session, each template judged first.

Photos named one by one are all-or-nothing, as before: one refused photo
refuses the enrollment and nothing is written. A folder is the household's
photo dump: each photo is reported (taken, skipped, refused and why) and the
good ones are enrolled. The camera session keeps asking for poses until it
has the frames it wants, saying what to change after each refused frame.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from ..calibrate.probes import IMAGE_SUFFIXES, guided_capture
from ..errors import EnrollmentRefused, ImageError
from ..types import Embedding
from .guidance import ENROLL_PROMPTS, advice
from .sanity import REFUSED, SKIPPED, TAKEN, EnrollRules, TemplateCheck, Verdict

log = logging.getLogger(__name__)

__all__ = ["enroll_camera", "enroll_images", "photos_in"]


def photos_in(folder: str | Path) -> list[Path]:
    """The image files of ``folder``, sorted; refuses a folder without any."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _embed_photo(pipeline, src, label: str, limits) -> tuple[Embedding | None, float | None, str]:
    """The photo's embedding and sharpness, or None and what to change."""
    from ..image import load_image

    try:
        image = src if isinstance(src, np.ndarray) else load_image(src, limits)
        face, seen = pipeline.largest(image)
    except ImageError as exc:
        return None, None, str(exc).removeprefix(f"{label}: ")
    if face is None:
        return None, None, f"no face found (minimum face size {pipeline.detector.min_face_size} px)"
    if seen > 1:
        return None, None, f"{seen} faces found; use a photo of one person"
    if face.embedding is None:
        assert face.crop.quality is not None
        return None, None, "; ".join(advice(face.crop.quality, pipeline.quality)) or "face not usable"
    return face.embedding, face.crop.quality.sharpness if face.crop.quality else None, ""


def enroll_images(pipeline, gallery, name: str, images: Sequence[str | Path | np.ndarray], rules: EnrollRules, *,
                  strict: bool = True, limits=None, allow_lookalike: bool = False,
                  report: Callable[[Verdict], None] | None = None) -> tuple[list[Verdict], int]:
    """Judge each image and enroll the taken ones; return every verdict and the person's template count.

    ``strict`` (photos named one by one): any refused photo refuses the
    enrollment, nothing written. Otherwise (a folder) refused photos are only
    reported. Copies are skipped either way; ``report`` sees each verdict.
    """
    check = TemplateCheck.from_gallery(gallery, name, pipeline.model_id, rules)
    verdicts: list[Verdict] = []
    for k, src in enumerate(images):
        label = f"image {k + 1}" if isinstance(src, np.ndarray) else Path(src).name
        emb, sharpness, why = _embed_photo(pipeline, src, str(src) if not isinstance(src, np.ndarray) else label,
                                           limits)
        if emb is None:
            verdict = Verdict(label, REFUSED, why)
        else:
            status, why, flag = check.judge(emb)
            verdict = Verdict(label, status, why, flag, emb, sharpness)
            if verdict.taken:
                check.take(emb)
        verdicts.append(verdict)
        if report is not None:
            report(verdict)
        if strict and verdict.status == REFUSED:
            raise EnrollmentRefused(f"{verdict.line()}; nothing enrolled")
    return verdicts, _store(gallery, name, verdicts, check, allow_lookalike)


def _store(gallery, name: str, verdicts: list[Verdict], check: TemplateCheck, allow_lookalike: bool) -> int:
    taken = [v for v in verdicts if v.taken]
    if not taken and verdicts and all(v.status == SKIPPED for v in verdicts):
        log.info("%s: every photo is a copy of a stored template; nothing written", name)
        return check.known
    if not taken:
        counts = Counter(v.reason.split(" (")[0] for v in verdicts if v.reason)
        common = f" (most often: {counts.most_common(1)[0][0]})" if counts else ""
        raise EnrollmentRefused(f"nothing enrolled for {name}: no photo or frame was taken{common}")
    assert all(v.embedding is not None for v in taken)
    gallery.enroll(name, [v.embedding for v in taken], sources=[v.source for v in taken],
                   qualities=[v.quality for v in taken], allow_lookalike=allow_lookalike)
    log.info("enrolled %s: %d template(s) taken, %d skipped or refused", name, len(taken), len(verdicts) - len(taken))
    return check.known


def enroll_camera(pipeline, gallery, name: str, source, rules: EnrollRules, *, frames: int = 5,
                  out: IO[str] | None = None, timeout_s: float = 60.0, min_gap_s: float = 0.5,
                  allow_lookalike: bool = False,
                  clock: Callable[[], float] = time.monotonic) -> tuple[list[Verdict], int, list[str]]:
    """A guided session at ``source``: ``frames`` good, distinct frames of ``name`` in a few poses.

    Each frame passes the quality gate (else the person is told what to
    change) and the sanity checks (a copy of a frame already taken asks for a
    new angle; a face matching someone else, or unlike the person's stored
    templates, is refused). Returns the verdicts of the taken frames, the
    person's template count and every refusal said. Fewer frames than asked
    are enrolled if the session times out with some taken.
    """
    out = out if out is not None else sys.stderr
    check = TemplateCheck.from_gallery(gallery, name, pipeline.model_id, rules)
    taken: list[Verdict] = []

    def judge(face) -> str | None:
        status, why, flag = check.judge(face.embedding)
        if status == TAKEN:
            check.take(face.embedding)
            sharp = face.crop.quality.sharpness if face.crop.quality else None
            taken.append(Verdict(f"camera frame {len(taken) + 1}", TAKEN, "", None, face.embedding, sharp))
            return None
        if status == REFUSED:
            return Verdict("frame", status, why, flag).why()
        return "hold on: move a little (a new angle)"

    def explain(face) -> str:
        assert face.crop.quality is not None
        return "; ".join(advice(face.crop.quality, pipeline.quality)) or "face not usable"

    with source:
        _, reasons = guided_capture(pipeline, source, name, frames, prompts=ENROLL_PROMPTS, check=judge,
                                    explain=explain, alone="only the person enrolling, please", out=out,
                                    timeout_s=timeout_s, min_gap_s=min_gap_s, clock=clock)
    if len(taken) < frames:
        out.write(f"{name}: {len(taken)} of {frames} frames taken\n")
    if not taken:
        counts = Counter(r.split(" (")[0] for r in reasons)
        common = f" (most often: {counts.most_common(1)[0][0]})" if counts else " (the camera gave no frames)"
        raise EnrollmentRefused(f"nothing enrolled for {name}: no good frame{common}")
    return taken, _store(gallery, name, taken, check, allow_lookalike), reasons
