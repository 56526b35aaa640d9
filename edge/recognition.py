"""Verification (1:1) and recognition (1:K) as library calls.

Thin functions over :class:`FacePipeline` and :class:`Gallery`; the CLI and
the daemon call these, so each answer carries everything needed to explain it
(distance, threshold, model, faces seen).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import FacegateError
from .gallery import Gallery
from .imageio import load_image
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


def _image(src: str | Path | np.ndarray) -> np.ndarray:
    return src if isinstance(src, np.ndarray) else load_image(src)


def threshold_for(pipeline: FacePipeline, threshold: float | None) -> float:
    return pipeline.embedder.thresholds.default if threshold is None else float(threshold)


def enroll(
    pipeline: FacePipeline,
    gallery: Gallery,
    name: str,
    images: Sequence[str | Path | np.ndarray],
    *,
    allow_lookalike: bool = False,
) -> EnrollReport:
    """Enroll ``name`` from one image (one-shot) or several.

    Every image must hold exactly one usable face; any bad image refuses the
    whole enrollment, so nothing is half written.
    """
    embeddings: list[Embedding] = []
    qualities: list[float] = []
    sources: list[str] = []
    for k, src in enumerate(images):
        label = str(src) if not isinstance(src, np.ndarray) else f"image {k + 1}"
        try:
            face, _ = pipeline.embed_one(_image(src), single=True)
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
) -> Judgement:
    """1:1: is the largest face of ``image`` the enrolled ``name``?"""
    face, seen = pipeline.embed_one(_image(image))
    assert face.embedding is not None
    match = gallery.verify(name, face.embedding, threshold_for(pipeline, threshold))
    return Judgement(match, seen, face.detection.size)


def identify(
    pipeline: FacePipeline,
    gallery: Gallery,
    image: str | Path | np.ndarray,
    threshold: float | None = None,
) -> Judgement:
    """1:K: who, if anyone in the gallery, is the largest face of ``image``?"""
    face, seen = pipeline.embed_one(_image(image))
    assert face.embedding is not None
    match = gallery.identify(face.embedding, threshold_for(pipeline, threshold))
    return Judgement(match, seen, face.detection.size)
