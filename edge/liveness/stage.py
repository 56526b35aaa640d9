"""The liveness stage: the checks over one person's frames of a visit, combined fail-secure.

* any check says ``spoof`` -> spoof (and it sticks until :meth:`reset`: a
  later frame that looks live does not undo a failed check);
* every check says ``live`` -> live;
* otherwise unsure; after ``timeout_seconds`` of unsure the stage answers
  ``spoof`` with check "timeout" (never grant on too little evidence), and
  starts a fresh observation so a person who then moves can still get in.

Samples are kept per claimed identity, so frames of two people (a photo and
the attacker's own face) are never mixed into one "moving head".
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence

import numpy as np

from .base import FaceSample, LivenessCheck, LivenessResult, Verdict
from .config import LivenessConfig

__all__ = ["Liveness"]

log = logging.getLogger(__name__)


class Liveness:
    """Keeps the samples of the current visit and asks every check about them."""

    def __init__(self, checks: Sequence[LivenessCheck], config: LivenessConfig | None = None) -> None:
        if not checks:
            raise ValueError("the liveness stage needs at least one check")
        self.checks = tuple(checks)
        self.config = config or LivenessConfig()
        self.needs_patch = any(c.needs_patch for c in self.checks)
        self.reset()

    def reset(self) -> None:
        """Forget every sample and verdict (a visit ended)."""
        self._samples: dict[str, deque[FaceSample]] = {}
        self._started: dict[str, float] = {}
        self._failed: dict[str, LivenessResult] = {}

    def add(self, name: str, sample: FaceSample) -> None:
        """One face frame whose face matched ``name``."""
        track = self._samples.setdefault(name, deque(maxlen=self.config.max_samples))
        track.append(sample)
        self._started.setdefault(name, sample.t)

    def samples(self, name: str) -> list[FaceSample]:
        return list(self._samples.get(name, ()))

    def judge(self, name: str, now: float) -> LivenessResult:
        """Is ``name``'s face live, over this visit's samples of it?"""
        if name in self._failed:
            return self._failed[name]
        samples = self.samples(name)
        results = [check.judge(samples) for check in self.checks]
        for r in results:
            if r.verdict is Verdict.SPOOF:
                self._failed[name] = r
                return r
        if all(r.verdict is Verdict.LIVE for r in results):
            return LivenessResult(Verdict.LIVE, "+".join(r.check for r in results),
                                  "; ".join(f"{r.check}: {r.reason}" for r in results))
        waiting = "; ".join(f"{r.check}: {r.reason}" for r in results if r.verdict is not Verdict.LIVE)
        started = self._started.get(name, now)
        if now - started >= self.config.timeout_seconds:
            # too little evidence for too long: deny, and watch afresh
            self._samples.pop(name, None)
            self._started.pop(name, None)
            return LivenessResult(Verdict.SPOOF, "timeout",
                                  f"no live verdict in {self.config.timeout_seconds:g} s ({waiting})")
        return LivenessResult(Verdict.UNSURE, "watching", waiting)


def make_sample(image: np.ndarray, detection, t: float, patch: bool) -> FaceSample:
    """A :class:`FaceSample` of one detected face; ``patch`` cuts the grey face centre too."""
    from .screen import face_patch

    h, w = image.shape[:2]
    cut = None
    origin = (0, 0)
    if patch:
        grey = image if image.ndim == 2 else cv2_grey(image)
        found = face_patch(grey, detection.box)
        if found is not None:
            cut, origin = found
    return FaceSample(t=float(t), landmarks=np.asarray(detection.landmarks, np.float64),
                      box=tuple(float(v) for v in detection.box), patch=cut, origin=origin, frame_size=(w, h))


def cv2_grey(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
