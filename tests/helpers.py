"""Shared test helpers: the shared data's location and small synthetic models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LFW = SHARED_DATA / "lfw"


def need_lfw() -> Path:
    if not (LFW / "pairs.txt").is_file():
        pytest.skip("../shared/data/lfw is not available")
    return LFW


def tiny_onnx_model(path: Path, dim: int = 8, size: int = 112, seed: int = 0) -> Path:
    """A real ONNX graph: 4x4 average pooling, flatten, a fixed random projection.

    Different faces give different embeddings, so matching logic is exercised
    for real while the file stays a few kB.
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    pooled = 3 * (size // 16) * (size // 16)
    w = rng.standard_normal((pooled, dim)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def tiny_bundle(folder: Path, dim: int = 8, seed: int = 0, name: str = "tiny") -> Path:
    from facegate.edge.embed.bundle import write_bundle

    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_onnx_model(folder / "model.onnx", dim=dim, seed=seed)
    write_bundle(folder, model, name=name, version="1", format="onnx", embedding_dim=dim,
                 thresholds={"default": 0.8, "by_fmr": {"1e-3": 0.7}})
    return folder
