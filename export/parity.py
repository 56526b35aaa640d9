"""Does an exported model compute what PyTorch computes? Cosine similarity on real crops.

The reference is the network as trained (BatchNorm unfolded, fp32) on
:func:`facegate.models.data.preprocess`'d crops; the candidate is a device
embedder (ONNX or TFLite bundle) fed the same aligned BGR uint8 crops through
its own preprocessing. Both are L2-normalised, so the Euclidean distance
between the two embeddings of one crop is ``sqrt(2 - 2 cos)``, directly
comparable with the bundle's distance thresholds.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from facegate.models.data import preprocess

from .onnx import net_input


def torch_embeddings(net: nn.Module, crops: np.ndarray | Sequence[np.ndarray], batch: int = 64) -> np.ndarray:
    """(N, dim) L2-normalised fp32 embeddings of BGR uint8 crops by ``net`` in eval mode."""
    was_training = net.training
    net.eval()
    out = []
    try:
        with torch.no_grad():
            for k in range(0, len(crops), batch):
                x = torch.from_numpy(preprocess(np.asarray(crops[k:k + batch]), net_input(net)))
                out.append(torch.nn.functional.normalize(net.forward_raw(x), dim=1).numpy())
    finally:
        net.train(was_training)
    return np.concatenate(out).astype(np.float32)


def parity(net: nn.Module, embedder: Any, crops: np.ndarray | Sequence[np.ndarray], batch: int = 32) -> dict[str, Any]:
    """Cosine similarity between ``net``'s and ``embedder``'s embeddings of each crop.

    Returns ``{"crops", "cosine_min", "cosine_mean", "cosine_p01", "distance_max",
    "distance_mean"}`` (distances Euclidean between unit vectors).
    """
    crops = np.asarray(crops)
    if len(crops) == 0:
        raise ValueError("parity needs at least one crop")
    ref = torch_embeddings(net, crops)
    got = np.concatenate([embedder.embed_prepared(list(crops[k:k + batch])) for k in range(0, len(crops), batch)])
    cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * cos))
    return {
        "crops": int(len(crops)),
        "cosine_min": round(float(cos.min()), 6),
        "cosine_mean": round(float(cos.mean()), 6),
        "cosine_p01": round(float(np.quantile(cos, 0.01)), 6),
        "distance_max": round(float(dist.max()), 5),
        "distance_mean": round(float(dist.mean()), 5),
    }
