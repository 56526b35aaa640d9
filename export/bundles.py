"""fp32 + INT8 model bundles of one network, each checked against PyTorch.

Each bundle is a folder ``<out>/<name>-<format>-<precision>/`` holding the
model file and ``manifest.json`` (:func:`facegate.edge.embed.bundle.write_bundle`).
After writing, the bundle is loaded the way the door loads it
(:func:`facegate.edge.embed.create_embedder`, checksum included) and its
embeddings of real crops are compared with PyTorch's; the figures go into the
manifest's ``evaluation`` under ``"parity"``, and a bundle that disagrees
beyond :data:`MIN_COSINE` is refused (its manifest removed, ExportError).

The LFW-half figures and thresholds in a manifest were measured with the
PyTorch network (``evaluation.export.figures_from``); the parity figures say
how far each artifact is from it.

:func:`export_checkpoint_bundles` is the whole job for a checkpoint (crops,
thresholds, figures, both bundles): ``facegate export onnx|tflite`` and the
end of ``facegate train run`` (``export = true``) both call it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from facegate.edge.embed.base import Thresholds
from facegate.edge.embed.bundle import MANIFEST, BinaryHead, InputSpec, Manifest, write_bundle

from . import ExportError
from .checkpoint import manifest_evaluation
from .crops import calibration_and_parity
from .parity import parity

log = logging.getLogger(__name__)

DEFAULT_NAME = "facegate-mfn"
#: precision -> (parity figure, the least it may be); INT8 is judged on the mean, fp32 on every crop
MIN_COSINE: dict[str, tuple[str, float]] = {"fp32": ("cosine_min", 0.9999), "int8": ("cosine_mean", 0.98)}


@dataclass(frozen=True)
class BundleInfo:
    """What every bundle of one export shares."""

    thresholds: Thresholds
    name: str = DEFAULT_NAME
    version: str = "0"
    binary_head: BinaryHead | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)  # the network's figures (LFW-half report keys)
    calibration_source: str = ""
    parity_source: str = ""


@dataclass(frozen=True)
class ExportedBundle:
    folder: Path
    manifest: Manifest
    parity: dict[str, Any]

    @property
    def model_file(self) -> Path:
        return self.folder / self.manifest.file

    @property
    def model_mb(self) -> float:
        return round(self.model_file.stat().st_size / 1e6, 3)

    def row(self) -> dict[str, Any]:
        """One JSON-able line for the CLI."""
        return {"bundle": str(self.folder), "model_id": self.manifest.model_id, "format": self.manifest.format,
                "model_mb": self.model_mb, **{f"parity_{k}": v for k, v in self.parity.items()}}


class BundleRefused(ExportError):
    """A bundle failed its parity check after others of the same export were written.

    ``written``: those bundles (complete and verified), e.g. the fp32 bundle when
    the INT8 one is refused.
    """

    def __init__(self, message: str, written: list[ExportedBundle]) -> None:
        super().__init__(message)
        self.written = list(written)


def _write(folder: Path, model: Path, fmt: str, precision: str, spec: InputSpec, dim: int, info: BundleInfo,
           export: dict[str, Any], net: nn.Module, parity_crops: np.ndarray, threads: int,
           min_cosine: dict[str, tuple[str, float]] | None) -> ExportedBundle:
    from facegate.edge.embed import create_embedder

    name = folder.name
    export = {"format": fmt, "precision": precision, "figures_from": "pytorch fp32",
              "output": "raw embedding; the runtime L2-normalises", "model_mb": round(model.stat().st_size / 1e6, 3),
              **export}
    fields: dict[str, Any] = dict(name=name, version=str(info.version), format=fmt, embedding_dim=dim, input=spec,
                                  metric="euclidean_l2", thresholds=info.thresholds, binary_head=info.binary_head)
    write_bundle(folder, model, **fields, evaluation={**info.evaluation, "export": export})
    embedder = create_embedder(str(folder), threads=threads)
    try:
        figures = parity(net, embedder, parity_crops)
    finally:
        embedder.close()
    figures = {"reference": "pytorch fp32 (BatchNorm unfolded)", "source": info.parity_source, **figures}
    key, least = (min_cosine or MIN_COSINE)[precision]
    if not figures[key] >= least:
        (folder / MANIFEST).unlink(missing_ok=True)
        raise ExportError(f"{name}: {key} {figures[key]:.6f} to PyTorch is below {least} on {figures['crops']} "
                          f"crops; bundle refused (manifest removed)")
    manifest = write_bundle(folder, model, **fields, evaluation={**info.evaluation, "export": export,
                                                                 "parity": figures})
    log.info("%s: %s, %.2f MB, cosine to torch min %.5f mean %.5f", folder, manifest.model_id,
             model.stat().st_size / 1e6, figures["cosine_min"], figures["cosine_mean"])
    return ExportedBundle(folder, manifest, figures)


def _bundle(out: Path, info: BundleInfo, fmt: str, precision: str, ext: str,
            make: Callable[[Path], Path]) -> tuple[Path, Path]:
    folder = out / f"{info.name}-{fmt}-{precision}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # never a stale manifest next to a new model file
    return folder, make(folder / f"{folder.name}.{ext}")


def _crops(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8 or len(a) == 0:
        raise ExportError(f"{what} crops must be a non-empty BGR uint8 (N, S, S, 3) array, "
                          f"got {a.dtype} {a.shape}")
    return a


def _fp32_and_int8(net: nn.Module, out: str | Path, info: BundleInfo, fmt: str, calibration_crops: np.ndarray,
                   parity_crops: np.ndarray, threads: int, min_cosine: dict[str, tuple[str, float]] | None,
                   fp32: tuple[Callable[[Path], Path], InputSpec, dict[str, Any]],
                   int8: tuple[Callable[[Path, Path, np.ndarray], Path], InputSpec, dict[str, Any]]
                   ) -> list[ExportedBundle]:
    """Write and check the fp32 bundle, then the INT8 one made from the same network.

    ``fp32`` is (make(path), input spec, export notes); ``int8`` is
    (make(path, fp32_path, calibration_crops), input spec, export notes). An
    INT8 bundle that is refused keeps the fp32 one (:class:`BundleRefused`).
    """
    calib, check = _crops(calibration_crops, "calibration"), _crops(parity_crops, "parity")
    out = Path(out)
    net = net.eval()
    make32, spec32, notes32 = fp32
    folder, fp32_path = _bundle(out, info, fmt, "fp32", fmt, make32)
    done = [_write(folder, fp32_path, fmt, "fp32", spec32, net.embedding_dim, info, notes32, net, check, threads,
                   min_cosine)]
    make8, spec8, notes8 = int8
    notes8 = {**notes8, "calibration": {"crops": int(len(calib)), "source": info.calibration_source}}
    try:
        folder, int8_path = _bundle(out, info, fmt, "int8", fmt, lambda p: make8(p, fp32_path, calib))
        done.append(_write(folder, int8_path, fmt, "int8", spec8, net.embedding_dim, info, notes8, net, check,
                           threads, min_cosine))
    except ExportError as exc:
        raise BundleRefused(str(exc), done) from exc
    return done


def export_onnx_bundles(net: nn.Module, out: str | Path, calibration_crops: np.ndarray, parity_crops: np.ndarray,
                        info: BundleInfo, threads: int = 1,
                        min_cosine: dict[str, tuple[str, float]] | None = None) -> list[ExportedBundle]:
    """``<name>-onnx-fp32`` and ``<name>-onnx-int8`` bundles in ``out``.

    ``min_cosine``: precision -> (parity figure, least value), default :data:`MIN_COSINE`.
    """
    import onnxruntime

    from .onnx import export_onnx, net_input, quantize_onnx_int8

    spec = net_input(net)
    return _fp32_and_int8(
        net, out, info, "onnx", calibration_crops, parity_crops, threads, min_cosine,
        fp32=(lambda p: export_onnx(net.eval(), p), spec,
              {"tool": "torch.onnx.export (dynamo), BatchNorm folded", "io": "float32"}),
        int8=(lambda p, fp32, calib: quantize_onnx_int8(fp32, p, calib, spec=spec), spec,
              {"tool": f"onnxruntime {onnxruntime.__version__} quantize_static: QDQ, per-channel int8 "
                       "weights, uint8 activations, MinMax calibration", "io": "float32"}),
    )


def export_tflite_bundles(net: nn.Module, out: str | Path, calibration_crops: np.ndarray, parity_crops: np.ndarray,
                          info: BundleInfo, threads: int = 1,
                          min_cosine: dict[str, tuple[str, float]] | None = None) -> list[ExportedBundle]:
    """``<name>-tflite-fp32`` and ``<name>-tflite-int8`` bundles in ``out`` (needs litert-torch); see
    :func:`export_onnx_bundles`."""
    from .tflite import export_tflite, export_tflite_int8, litert_torch_version, tflite_input

    tool = f"litert-torch {litert_torch_version()}"
    return _fp32_and_int8(
        net, out, info, "tflite", calibration_crops, parity_crops, threads, min_cosine,
        fp32=(lambda p: export_tflite(net.eval(), p), tflite_input(net),
              {"tool": f"{tool}, BatchNorm folded", "io": "float32"}),
        int8=(lambda p, fp32, calib: export_tflite_int8(net.eval(), p, calib), tflite_input(net, int8=True),
              {"tool": f"{tool} PT2E: per-channel symmetric int8 weights, per-tensor int8 activations, "
                       "histogram calibration",
               "io": "int8 (quantised with the model's own input/output scale and zero point)"}),
    )


def _path(value: Any) -> Path:
    """A path as the training recipes write them: ``~`` and ``$VARS`` expanded."""
    return Path(os.path.expandvars(str(value))).expanduser()


def export_checkpoint_bundles(net: nn.Module, extras: dict[str, Any], out: str | Path, fmt: str = "onnx", *,
                              report: dict[str, Any] | None = None, thresholds: Thresholds | None = None,
                              calib: str | Path | None = None, parity_source: str | Path | None = None,
                              calib_count: int = 300, parity_count: int = 500, seed: int = 0,
                              name: str = DEFAULT_NAME, version: str | None = None,
                              min_int8_cosine: float | None = None, threads: int = 1) -> list[ExportedBundle]:
    """fp32 + INT8 bundles (``fmt`` "onnx" or "tflite") of a network read by
    :func:`facegate.export.checkpoint.load_checkpoint`, into ``out``.

    ``report`` / ``thresholds``: default the checkpoint's evaluation and its
    thresholds (one of them is needed). ``calib``: calibration crops (default:
    the checkpoint's training cache); ``parity_source``: parity crops (default:
    the checkpoint's eval set if it exists, else the rest of ``calib``); see
    :func:`facegate.export.crops.calibration_and_parity`. ``version``: default
    the recipe's ``bundle_version``. ``min_int8_cosine``: the INT8 bundle's
    least mean cosine to PyTorch (default :data:`MIN_COSINE`'s).
    """
    if fmt not in ("onnx", "tflite"):
        raise ExportError(f"format must be onnx or tflite, got {fmt!r}")
    report = dict(extras.get("evaluation") or {}) if report is None else report
    thresholds = thresholds if thresholds is not None else extras.get("thresholds")
    if thresholds is None:
        raise ExportError(f"{extras.get('path', 'the network')}: no evaluated thresholds; pass --evaluation "
                          "REPORT.json (facegate train eval --json) or --threshold DISTANCE")
    config = extras.get("config") or {}
    own = config.get("cache") or config.get("views")  # the small network's training cache, a rung's view cache
    calib_src = _path(calib) if calib is not None else (_path(own) if own else None)
    if calib_src is None or not calib_src.exists():
        raise ExportError(f"no calibration crops{f' at {calib_src}' if calib_src else ''}: pass --calib with a "
                          "prepared training cache (facegate train prepare) or a .npy of aligned 112x112 crops")
    from .onnx import net_input

    size = net_input(net).size
    parity_src = _path(parity_source) if parity_source is not None else None
    if parity_src is None and config.get("eval_cache") and _path(config["eval_cache"]).is_dir() and size == 112:
        parity_src = _path(config["eval_cache"])
    calib_crops, parity_crops = calibration_and_parity(calib_src, calib_count, parity_count, parity_src, seed=seed,
                                                       size=size)
    for what, crops in (("calibration", calib_crops), ("parity", parity_crops)):
        if crops.shape[1] != size:
            raise ExportError(f"{what} crops are {crops.shape[1]} px, the network takes {size} px; "
                              "give crops of its own view (a view cache: facegate train views)")
    from facegate.models.flops import count_cost

    net_cost = count_cost(net, (1, 3, size, size))
    evaluation = {**manifest_evaluation(report, extras),
                  "network": {"parameters": net_cost.params, "gflops": round(net_cost.flops / 1e9, 3)}}
    info = BundleInfo(thresholds=thresholds, name=name, version=str(version or extras.get("version") or "0"),
                      binary_head=extras.get("binary_head"), evaluation=evaluation,
                      calibration_source=str(calib_src), parity_source=str(parity_src or calib_src))
    floors = None if min_int8_cosine is None else {**MIN_COSINE, "int8": ("cosine_mean", float(min_int8_cosine))}
    run = export_onnx_bundles if fmt == "onnx" else export_tflite_bundles
    return run(net, out, calib_crops, parity_crops, info, threads=threads, min_cosine=floors)
