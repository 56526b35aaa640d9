"""The end of ``facegate train run`` with ``export = true``: a run's bundles and weights files.

The training loop finds :func:`export_run` through the ``facegate.exporters``
entry point (``onnx``), so :mod:`facegate.models` never imports this
package. Importing this module does not import torch or onnx: what needs
them is imported when the export runs, so a missing extra becomes a logged
hint in ``result.json`` rather than a crashed run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import EXPORT_HINT, ExportError

log = logging.getLogger(__name__)


def export_run(checkpoint: str | Path, out: str | Path, calib: str | Path | None = None,
               parity: str | Path | None = None, version: str | None = None,
               min_int8_cosine: float | None = None, threads: int = 1,
               weights_dir: str | Path | None = None) -> dict[str, Any]:
    """What ``facegate export onnx CHECKPOINT --out OUT`` does, plus the network's weights files.

    The bundles (:func:`facegate.export.bundles.export_checkpoint_bundles`):
    fp32 and INT8 ``facegate-mfn`` ONNX bundles in ``out``, thresholds and
    figures from the checkpoint's evaluation, calibration crops from ``calib``
    (default: the run's training cache), parity crops from ``parity``
    (default: its eval set). The weights: the network's unfolded and folded
    state_dicts (:func:`facegate.models.checkpoint.save_weights`) in
    ``weights_dir`` (default: the checkpoint's folder).

    Never raises for a failed export: the checkpoint is saved already and
    ``facegate export onnx`` can redo it. An INT8 bundle refused by its parity
    check leaves the fp32 bundle in place. Returns ``{"bundle": the fp32 bundle
    folder or None, "bundles": one row per bundle written, "weights": [...],
    "error": None or what failed}``.
    """
    ckpt_path = Path(checkpoint)
    wdir = Path(weights_dir) if weights_dir else (ckpt_path if ckpt_path.is_dir() else ckpt_path.parent)
    result: dict[str, Any] = {"bundle": None, "bundles": [], "weights": [], "error": None}
    redo = f"facegate export onnx {ckpt_path} --out {out}"
    try:
        from facegate.models.checkpoint import BUNDLE_NAME, save_weights

        from .bundles import BundleRefused, export_checkpoint_bundles
        from .checkpoint import load_checkpoint

        net, extras = load_checkpoint(ckpt_path)
    except Exception as exc:  # the run is done: report, do not crash
        log.exception("no export: cannot read %s back", ckpt_path)
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    made: list[Any] = []
    try:
        made = export_checkpoint_bundles(net, extras, out, "onnx", calib=calib, parity_source=parity,
                                         name=BUNDLE_NAME, version=version, min_int8_cosine=min_int8_cosine,
                                         threads=threads)
    except BundleRefused as exc:  # the INT8 bundle: the fp32 one is written and verified
        made = exc.written
        log.error("%s; the fp32 bundle is kept", exc)
        result["error"] = str(exc)
    except ExportError as exc:
        log.error("no bundle exported: %s; redo with %s", exc, redo)
        result["error"] = str(exc)
    except ImportError as exc:
        log.warning("no bundle exported (%s); %s and run %s", exc, EXPORT_HINT, redo)
        result["error"] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # an exporter bug must not cost the run its result.json
        log.exception("export failed; the checkpoint is saved, redo with %s", redo)
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["bundles"] = [b.row() for b in made]
    result["bundle"] = str(made[0].folder) if made else None
    written = save_weights(net, wdir, step=extras["step"], sha256_onnx=made[0].manifest.sha256 if made else None)
    result["weights"] = [str(p) for p in written]
    return result
