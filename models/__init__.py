"""Facegate's own embedding network: training code and the shipped bundles.

This module must not import torch: the edge runtime reads the shipped model
bundles from this package as data. The training code lives in submodules that
need the ``train`` extra:

- :mod:`.prepare`, :mod:`.data`     the training cache; P x K batches, augmentations
- :mod:`.network`, :mod:`.losses`, :mod:`.flops`  the embedding network; its losses; its cost
- :mod:`.recipe`       ``TrainConfig``: a run's TOML recipe
- :mod:`.objective`    ``TrainModel`` (the loss of a step), optimiser, learning-rate schedule
- :mod:`.loop`         ``train``: the resumable training loop
- :mod:`.checkpoint`   what a run saves and reads back: checkpoint, RNG states, weights files
- :mod:`.distributed`  DDP under torchrun
- :mod:`.evalset`, :mod:`.evaluate`  LFW split-B crops; a torch network's figures on them
- :mod:`.ladder`, :mod:`.irn`, :mod:`.facenet_import`, :mod:`.views`, :mod:`.viewcache`
  the Inception-ResNet (FaceNet) ladder
- :mod:`.cli`          ``facegate train ...``

Nothing here imports :mod:`facegate.export` (which imports this package): a
run with ``export = true`` finds its exporter through the
``facegate.exporters`` entry point.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundles_dir() -> Path:
    """Folder holding the shipped model bundles (one sub-folder each)."""
    return Path(str(resources.files(__name__) / "bundles"))
