"""Enrollment sanity: is a new template a copy, somebody else, or not like the person's other photos?

Judged at the door's own threshold (``[match] threshold``, else the model
bundle's): a face the door would take for ALICE must not become BOB's
template, and a face the door would not take for BOB must not be added to him.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..types import Embedding

log = logging.getLogger(__name__)

__all__ = ["DUPLICATE_FRACTION", "REFUSED", "SKIPPED", "TAKEN", "EnrollRules", "TemplateCheck", "Verdict"]

#: A template nearer than this fraction of the threshold to one already stored
#: is a copy: the same photo (distance 0) or the same frame twice. Measured with
#: the shipped model (threshold 0.90): the same photo flipped, rescaled by 0.8 or
#: rotated by 8 degrees lies 0.23-0.27 away, so 0.15 x 0.90 = 0.135 catches
#: copies and re-encodes, not a second real photo.
DUPLICATE_FRACTION = 0.15

TAKEN, SKIPPED, REFUSED = "taken", "skipped", "refused"


@dataclass(frozen=True)
class EnrollRules:
    """The door's threshold, the duplicate distance, and which refusals the user overrode."""

    threshold: float
    duplicate_distance: float
    allow_mismatch: bool = False
    allow_duplicate: bool = False
    allow_other_person: bool = False

    @classmethod
    def for_threshold(cls, threshold: float, **overrides: bool) -> EnrollRules:
        return cls(float(threshold), DUPLICATE_FRACTION * float(threshold), **overrides)


@dataclass(frozen=True)
class Verdict:
    """What became of one photo or frame: taken, skipped (a copy) or refused, and why."""

    source: str
    status: str
    reason: str = ""
    override: str | None = None  # the CLI flag that would have taken it
    embedding: Embedding | None = None
    quality: float | None = None

    @property
    def taken(self) -> bool:
        return self.status == TAKEN

    def line(self) -> str:
        """One line for the person enrolling: ``photo.jpg: refused: this face matches alice (...)``."""
        return f"{self.source}: {self.status}" + (f": {self.why()}" if self.reason else "")

    def why(self) -> str:
        """The reason, with the flag that overrides it."""
        return self.reason + (f" [{self.override} to enroll it anyway]" if self.override else "")


class TemplateCheck:
    """The gallery's templates of one model, plus those taken so far in this enrollment, for judging the next."""

    def __init__(self, name: str, model_id: str, rules: EnrollRules, names: list[str], matrix: np.ndarray) -> None:
        self.name = name
        self.model_id = model_id
        self.rules = rules
        rows = np.asarray(names, dtype=object)
        matrix = np.asarray(matrix, np.float32)
        mine = rows == name if len(rows) else np.zeros(0, bool)
        self._own: list[np.ndarray] = list(matrix[mine])
        self._other_names = rows[~mine]
        self._others = matrix[~mine]

    @classmethod
    def from_gallery(cls, gallery, name: str, model_id: str, rules: EnrollRules) -> TemplateCheck:
        """Read the templates through the Gallery API (decrypted there); a new gallery has none."""
        from ..gallery.checks import check_name

        names, matrix = gallery.templates(model_id)
        return cls(check_name(name), model_id, rules, names, matrix)

    @property
    def known(self) -> int:
        """Templates of this person so far (stored and taken in this enrollment)."""
        return len(self._own)

    def judge(self, embedding: Embedding) -> tuple[str, str, str | None]:
        """``(status, reason, override flag)`` for one new template; nothing is recorded."""
        r = self.rules
        vec = np.asarray(embedding.vector, np.float32)
        own = float(np.min(np.linalg.norm(np.stack(self._own) - vec, axis=1))) if self._own else None
        if own is not None and own < r.duplicate_distance and not r.allow_duplicate:
            why = f"a near-duplicate of a template {self.name} already has (distance {own:.3f} < {r.duplicate_distance:.3f})"
            return SKIPPED, why, "--allow-duplicate"
        if not r.allow_other_person and len(self._others):
            dist = np.linalg.norm(self._others - vec, axis=1)
            k = int(np.argmin(dist))
            if dist[k] <= r.threshold:
                why = f"this face matches {self._other_names[k]} (distance {dist[k]:.3f} <= threshold {r.threshold:.3f})"
                return REFUSED, why, "--allow-other-person"
        if own is not None and own > r.threshold and not r.allow_mismatch:
            why = (f"this face does not look like {self.name}'s other photos "
                   f"(distance {own:.3f} > threshold {r.threshold:.3f})")
            return REFUSED, why, "--allow-mismatch"
        return TAKEN, "", None

    def take(self, embedding: Embedding) -> None:
        """Count a taken template, so the next one is judged against it too (and a copy of it is caught)."""
        self._own.append(np.asarray(embedding.vector, np.float32))
