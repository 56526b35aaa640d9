"""Facegate's own embedding network: training code and the shipped bundles.

This module must not import torch: the edge runtime reads the shipped model
bundles from this package as data. The training code lives in submodules that
need the ``train`` extra.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundles_dir() -> Path:
    """Folder holding the shipped model bundles (one sub-folder each)."""
    return Path(str(resources.files(__name__) / "bundles"))
