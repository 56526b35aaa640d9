"""Embedders behind one protocol, built by name or from a bundle folder."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .base import Embedder, EmbedderBase, Thresholds

#: Pretrained references, by name; our own networks come as bundle folders.
REFERENCE_EMBEDDERS = ("facenet", "dlib")
DEFAULT_EMBEDDER = "facenet"
#: Our own network, by its family name: the shipped bundle a device should run (fastest at equal accuracy).
#: Not the door's default until it beats the references on LFW-half (models/MODEL_CARD.md).
OWN_NETWORK = "facegate-mfn"
DEFAULT_BUNDLE = "facegate-mfn-onnx-int8"

__all__ = ["Embedder", "EmbedderBase", "Thresholds", "create_embedder", "resolve_bundle", "REFERENCE_EMBEDDERS",
           "DEFAULT_EMBEDDER", "OWN_NETWORK", "DEFAULT_BUNDLE"]


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
    return _shipped_bundle(DEFAULT_BUNDLE if name == OWN_NETWORK else name)


def create_embedder(name: str = DEFAULT_EMBEDDER, threads: int = 1) -> Embedder:
    """Build an embedder: "facenet", "dlib", a shipped bundle's name, or a bundle folder."""
    if name == "facenet":
        from .facenet import FaceNetEmbedder

        return FaceNetEmbedder(threads=threads)
    if name == "dlib":
        from .dlib import DlibEmbedder

        return DlibEmbedder(threads=threads)
    folder = resolve_bundle(name)
    if folder is not None:
        import json

        fmt = json.loads((folder / "manifest.json").read_text()).get("format")
        if fmt == "tflite":
            from .tflite import TfliteEmbedder  # type: ignore[import-not-found]

            return TfliteEmbedder(folder, threads=threads)
        from .onnx import OnnxEmbedder

        return OnnxEmbedder(folder, threads=threads)
    from facegate.models import bundles_dir

    shipped = sorted(d.name for d in bundles_dir().glob("*") if (d / "manifest.json").is_file())
    raise ModelError(f"unknown embedder {name!r}: use facenet, dlib, a model bundle folder or a shipped bundle "
                     f"({', '.join(shipped) or 'none installed'})")
