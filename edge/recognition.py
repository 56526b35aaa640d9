"""Verification (1:1) and recognition (1:K) as library calls.

Thin functions over :class:`FacePipeline` and :class:`Gallery`; the CLI and
the daemon call these, so each answer carries everything needed to explain it
(distance, threshold, model, faces seen).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import FacegateError
from .gallery import Gallery
from .image import ImageLimits, load_image
from .pipeline import FacePipeline
from .types import Embedding, Match

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judgement:
    """A 1:1 or 1:K answer for one image."""

    match: Match
    faces_seen: int
    face_px: float

    @property
    def accepted(self) -> bool:
        return self.match.accepted


@dataclass(frozen=True)
class EnrollReport:
    name: str
    added: int
    sources: tuple[str, ...]
    total_templates: int
    #: with sanity rules: what became of each photo (taken, skipped as a copy, refused and why)
    verdicts: tuple = ()


def _image(src: str | Path | np.ndarray, limits: ImageLimits | None = None) -> np.ndarray:
    return src if isinstance(src, np.ndarray) else load_image(src, limits)


def threshold_for(pipeline: FacePipeline, threshold: float | None) -> float:
    return pipeline.embedder.thresholds.default if threshold is None else float(threshold)


def enroll(
    pipeline: FacePipeline,
    gallery: Gallery,
    name: str,
    images: Sequence[str | Path | np.ndarray],
    *,
    allow_lookalike: bool = False,
    limits: ImageLimits | None = None,
    rules=None,
) -> EnrollReport:
    """Enroll ``name`` from one image (one-shot) or several.

    Every image must hold exactly one usable face; any bad image refuses the
    whole enrollment, so nothing is half written. With ``rules``
    (:class:`~facegate.edge.enrollment.EnrollRules`, what the CLI passes) each
    template is also judged against the gallery: a copy of a stored template
    is skipped, and a face unlike the person's other templates or matching
    another person refuses the enrollment.
    """
    if rules is not None:
        from .enrollment import enroll_images

        verdicts, total = enroll_images(pipeline, gallery, name, images, rules, strict=True, limits=limits,
                                        allow_lookalike=allow_lookalike)
        taken = tuple(v.source for v in verdicts if v.taken)
        return EnrollReport(name, len(taken), taken, total, tuple(verdicts))
    embeddings: list[Embedding] = []
    qualities: list[float] = []
    sources: list[str] = []
    for k, src in enumerate(images):
        label = str(src) if not isinstance(src, np.ndarray) else f"image {k + 1}"
        try:
            face, _ = pipeline.embed_one(_image(src, limits), single=True)
        except FacegateError as exc:
            message = str(exc) if str(exc).startswith(label) else f"{label}: {exc}"
            raise type(exc)(message) from None
        assert face.embedding is not None
        embeddings.append(face.embedding)
        qualities.append(face.crop.quality.sharpness)
        sources.append(Path(label).name)
    if not embeddings:
        raise ValueError("no images given")
    gallery.enroll(name, embeddings, sources=sources, qualities=qualities, allow_lookalike=allow_lookalike)
    total = next((p.templates for p in gallery.people() if p.name == name), len(embeddings))
    log.info("enrolled %s: %d template(s) added, %d in all", name, len(embeddings), total)
    return EnrollReport(name, len(embeddings), tuple(sources), total)


def verify(
    pipeline: FacePipeline,
    gallery: Gallery,
    name: str,
    image: str | Path | np.ndarray,
    threshold: float | None = None,
    limits: ImageLimits | None = None,
) -> Judgement:
    """1:1: is the largest face of ``image`` the enrolled ``name``?"""
    face, seen = pipeline.embed_one(_image(image, limits))
    assert face.embedding is not None
    match = gallery.verify(name, face.embedding, threshold_for(pipeline, threshold))
    return Judgement(match, seen, face.detection.size)


def identify(
    pipeline: FacePipeline,
    gallery: Gallery,
    image: str | Path | np.ndarray,
    threshold: float | None = None,
    limits: ImageLimits | None = None,
    margin: float | None = None,
) -> Judgement:
    """1:K: who, if anyone in the gallery, is the largest face of ``image``?"""
    face, seen = pipeline.embed_one(_image(image, limits))
    assert face.embedding is not None
    match = require_margin(gallery.identify(face.embedding, threshold_for(pipeline, threshold)), margin)
    return Judgement(match, seen, face.detection.size)


def require_margin(match: Match, margin: float | None) -> Match:
    """Refuse a 1:K answer whose runner-up is within ``margin`` of the best person (``[match] margin``).

    Two enrolled look-alikes (siblings) both near the face: naming either
    would be a guess. ``best_name`` still says who was nearest.
    """
    if margin is None or not match.accepted or match.margin is None or match.margin >= margin:
        return match
    return replace(match, name=None)
