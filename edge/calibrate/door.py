"""Calibrating one door: its pipeline, gallery, probes, background set and field feedback together.

:func:`calibrate_door` is what ``facegate calibrate`` runs; everything it
reads comes from the door's config, so the threshold fits the door's own
camera, detector, quality gate and model.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

import numpy as np

from ..errors import CalibrationError, FacegateError, GalleryError
from .analysis import DEFAULT_TARGET_FMR, Calibration, calibrate_scores
from .probes import ProbeSet, capture_session, probes_from_folder
from .scores import Household, ScoreSet, gather_scores

log = logging.getLogger(__name__)

__all__ = ["CalibrationRun", "calibrate_door"]


@dataclass(frozen=True)
class CalibrationRun:
    calibration: Calibration
    scores: ScoreSet
    probes: ProbeSet
    feedback_used: int
    background_people: int


def calibrate_door(
    cfg,
    gallery_path: str | Path,
    *,
    probes_dir: str | Path | None = None,
    camera: bool = False,
    people: list[str] | None = None,
    frames: int = 20,
    target_fmr: float = DEFAULT_TARGET_FMR,
    background: bool = True,
    feedback: bool = True,
    pipeline=None,
    source=None,
    out: IO[str] | None = None,
    wait: Callable[[str], None] | None = None,
) -> CalibrationRun:
    """Gather the door's scores and calibrate them (nothing is written here).

    ``camera``: a guided session at ``source`` (default: the config's camera)
    for each of ``people`` (default: everyone enrolled), ``frames`` each;
    ``wait(name)`` is called before each person (the CLI waits for Enter).
    """
    from ..gallery import Gallery
    from ..pipeline import create_pipeline

    out = out if out is not None else sys.stderr
    pipeline = pipeline or create_pipeline(cfg)
    model_id = pipeline.model_id
    gallery_path = Path(gallery_path)
    if not gallery_path.is_file():
        raise CalibrationError(f"no gallery at {gallery_path}: enroll the household first")
    with Gallery(gallery_path, readonly=True, key_file=cfg.storage.key_file) as gallery:
        names, matrix = gallery.templates(model_id)
        stored = gallery.model_ids()
        cipher = gallery.template_cipher()  # the marked decisions' embeddings are sealed with it
    if not names:
        other = f" (it holds {', '.join(sorted(stored))})" if stored else ""
        raise CalibrationError(f"nobody in {gallery_path} is enrolled with {model_id}{other}")
    household = Household.from_rows(names, matrix)
    enrolled = set(household.people)

    if probes_dir is not None:
        probes = probes_from_folder(pipeline, probes_dir, enrolled)
    elif camera:
        probes = _camera_probes(cfg, pipeline, source, people or household.people, enrolled, frames, out, wait)
    else:
        probes = ProbeSet()
    for path, why in probes.refused:
        log.info("probe refused: %s: %s", path, why)

    wrong_grants: list[tuple[np.ndarray, str | None]] = []
    merged = {k: list(v) for k, v in probes.probes.items()}
    used = 0
    if feedback:
        for fb in _feedback(gallery_path, model_id, cipher):
            if fb.outcome == "grant":
                wrong_grants.append((fb.vector, fb.actual))
                used += 1
            elif fb.actual in enrolled:
                merged.setdefault(fb.actual, []).append(fb.vector)
                used += 1
    household = Household(household.templates, {k: np.stack(v) for k, v in merged.items() if v})
    if not household.probes and not wrong_grants:
        raise CalibrationError("no probes: give --probes DIR (a sub-folder of images per person) or --camera")

    bg = None
    bg_people = 0
    if background:
        bg_set = _background(cfg.embedder.name, model_id)
        if bg_set is not None:
            bg, bg_people = bg_set.vectors, bg_set.people
    head = None
    manifest = getattr(pipeline.embedder, "manifest", None)
    if manifest is not None and manifest.binary_head is not None:
        head = (np.asarray(manifest.binary_head.weights, np.float32), float(manifest.binary_head.bias))

    scores = gather_scores(household, bg, wrong_grants, head=head, visitors=probes.visitors)
    calibration = calibrate_scores(scores, model_id, target_fmr, previous_threshold=cfg.match.threshold)
    return CalibrationRun(calibration, scores, probes, used, bg_people)


def _camera_probes(cfg, pipeline, source, people, enrolled, frames, out, wait) -> ProbeSet:
    from ..camera import create_source

    unknown = sorted(set(people) - enrolled)
    if unknown:
        raise CalibrationError(f"not enrolled: {', '.join(unknown)}; enroll them first")
    source = source or create_source(cfg.camera)
    found: dict[str, np.ndarray] = {}
    with source:
        for name in people:
            if wait is not None:
                wait(name)
            # a replay (tests, recorded sessions) is read as fast as it goes: keep every frame
            gap = 0.0 if getattr(cfg.camera, "type", None) == "replay" else 0.3
            vectors, _ = capture_session(pipeline, source, name, frames, out=out, min_gap_s=gap)
            if len(vectors) < frames:
                out.write(f"{name}: {len(vectors)} of {frames} frames collected\n")
            if len(vectors):
                found[name] = vectors
    return ProbeSet(found)


def _feedback(gallery_path: Path, model_id: str, cipher):
    from ..audit import AuditLog, marked_feedback

    try:
        with AuditLog(gallery_path, retention_days=None, max_events=None) as audit:
            return marked_feedback(audit, model_id, cipher=cipher)
    except (GalleryError, FacegateError) as exc:
        log.warning("field feedback not read: %s", exc)
        return []


def _background(embedder_name: str, model_id: str):
    from ..embed import resolve_bundle
    from .background import load_background

    folder = resolve_bundle(embedder_name)
    if folder is None:
        log.warning("%s is not a bundle: no background set", embedder_name)
        return None
    bg = load_background(folder, model_id)
    if bg is None:
        log.warning("%s has no background set; build one with facegate calibrate background", folder.name)
    return bg
