"""Embedders behind one protocol, built by name or from a bundle folder.

``create_embedder`` looks a name up in :data:`EMBEDDERS` (the pretrained
references) and otherwise treats it as a model bundle (a folder, or the name
of a shipped one), which :class:`~.bundle.BundleEmbedder` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ModelError
from .base import Embedder, EmbedderBase, Thresholds

#: Pretrained references, by name; our own networks come as bundle folders.
REFERENCE_EMBEDDERS = ("facenet", "dlib")
#: Each of our networks by its family name -> the shipped bundle a device runs (INT8 ONNX: the fastest here).
FAMILIES = {"facegate-irn": "facegate-irn-onnx-int8", "facegate-irn-r160": "facegate-irn-r160-onnx-int8",
            "facegate-irn-r112": "facegate-irn-r112-onnx-int8", "facegate-mfn": "facegate-mfn-onnx-int8"}
#: The door's network: the fastest of our INT8 bundles whose LFW-half figures are at least FaceNet-CASIA's
#: at both FARs (README "Measured accuracy", models/MODEL_CARD.md).
OWN_NETWORK = "facegate-irn"
DEFAULT_BUNDLE = FAMILIES[OWN_NETWORK]
DEFAULT_EMBEDDER = OWN_NETWORK

__all__ = ["EMBEDDERS", "Embedder", "EmbedderBase", "Thresholds", "create_embedder", "resolve_bundle", "REFERENCE_EMBEDDERS",
           "DEFAULT_EMBEDDER", "OWN_NETWORK", "DEFAULT_BUNDLE", "FAMILIES"]


def _shipped_bundle(name: str) -> Path | None:
    from facegate.models import bundles_dir

    folder = bundles_dir() / name
    return folder if (folder / "manifest.json").is_file() else None


def resolve_bundle(name: str) -> Path | None:
    """The bundle folder that ``name`` means (a folder or a shipped bundle's name), None if it is no bundle."""
    if name in REFERENCE_EMBEDDERS:
        return None
    folder = Path(name)
    if (folder / "manifest.json").is_file():
        return folder
    return _shipped_bundle(FAMILIES.get(name, name))


def _facenet(threads: int) -> Embedder:
    from .references import FaceNetEmbedder  # OpenCV's dnn graph: only when asked for

    return FaceNetEmbedder(threads=threads)


def _dlib(threads: int) -> Embedder:
    from .references import DlibEmbedder

    return DlibEmbedder(threads=threads)


#: Reference embedders by name; anything else is a model bundle.
EMBEDDERS: dict[str, Callable[[int], Embedder]] = {"facenet": _facenet, "dlib": _dlib}


def create_embedder(name: str = DEFAULT_EMBEDDER, threads: int = 1) -> Embedder:
    """Build an embedder: "facenet", "dlib", a shipped bundle's name, or a bundle folder."""
    if name in EMBEDDERS:
        return EMBEDDERS[name](threads)
    folder = resolve_bundle(name)
    if folder is not None:
        from .bundle import BundleEmbedder

        return BundleEmbedder(folder, threads=threads)
    from facegate.models import bundles_dir

    shipped = sorted(d.name for d in bundles_dir().glob("*") if (d / "manifest.json").is_file())
    raise ModelError(f"unknown embedder {name!r}: use facenet, dlib, a model bundle folder or a shipped bundle "
                     f"({', '.join(shipped) or 'none installed'})")
