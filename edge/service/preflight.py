"""Refuse to start a door that cannot work, with one clear message.

A daemon that reports READY and then dies at the first face restarts in a
loop under systemd while the door looks alive; a daemon that creates an
empty gallery runs a door that opens for nobody. Both are caught here,
before READY: the gallery must exist, hold people, be readable and be
enrolled with the model the door runs, and the threshold must not be one
that lets strangers in.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import GalleryError, GalleryModelMismatch
from ..gallery import Gallery
from ..operating_threshold import check_threshold_safety

log = logging.getLogger(__name__)

__all__ = ["open_door_gallery", "check_ready", "check_config_threshold"]


def open_door_gallery(path: str | Path, **kwargs) -> Gallery:
    """The daemon's gallery: it must already exist (enrollment creates it, the door never does).

    ``kwargs`` go to :class:`Gallery` (key file, file mode).
    """
    if str(path) != ":memory:":
        p = Path(path)
        if not p.exists():
            raise GalleryError(f"{p}: no gallery: enroll someone first (facegate enroll NAME IMAGE --gallery {p}); "
                               "the door does not run with nobody enrolled")
        if not p.is_file():
            raise GalleryError(f"{p}: not a gallery file")
    return Gallery(path, **kwargs)


def check_config_threshold(cfg) -> None:
    """The threshold refusal of :func:`check_ready`, from a config alone (``config check``, ``doctor``).

    Only a configured ``[match] threshold`` can be unsafe; the model is built
    then, for the thresholds it was measured at (a ModelError when it cannot be).
    """
    m = cfg.match
    if m.threshold is None:
        return
    from ..embed import create_embedder

    emb = create_embedder(cfg.embedder.name, threads=1)
    try:
        thresholds = emb.thresholds
    finally:
        getattr(emb, "close", lambda: None)()
    check_threshold_safety(m.threshold, thresholds, m.allow_unsafe_threshold)


def check_ready(gallery: Gallery, model_id: str, thresholds, threshold: float | None,
                allow_unsafe_threshold: bool) -> None:
    """Everything the first face would otherwise find out the hard way; raises a FacegateError."""
    people = len(gallery)
    if people == 0:
        raise GalleryError(f"{gallery.path}: nobody is enrolled; enroll someone first (facegate enroll)")
    stored = gallery.model_ids()
    if stored != {model_id}:
        names = ", ".join(sorted(stored)) or "no templates"
        raise GalleryModelMismatch(
            f"{gallery.path}: enrolled with {names} but the door runs {model_id}; set [embedder] name to that "
            "model, or re-enroll everyone with this one")
    check_threshold_safety(threshold, thresholds, allow_unsafe_threshold)
    log.info("preflight ok: %d people enrolled with %s", people, model_id)
