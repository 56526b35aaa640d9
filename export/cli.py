"""``facegate export onnx|tflite CHECKPOINT --out DIR``: fp32 + INT8 bundles of a trained network.

Registered into facegate.edge's CLI through the ``facegate.commands`` entry
point. Importing this module and :func:`register` never import torch:
``facegate --help`` works on a door without the ``export`` extra, and the
commands say how to install what they miss.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from facegate.edge.errors import BackendUnavailable

from . import EXPORT_HINT, TFLITE_EXPORT_HINT, ExportError

log = logging.getLogger(__name__)


def require(fmt: str) -> None:
    """Raise :class:`BackendUnavailable` naming the extra when an exporter's packages are missing."""
    missing = []
    for module in ("torch", "onnx", "onnxscript") + (("litert_torch",) if fmt == "tflite" else ()):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        hint = TFLITE_EXPORT_HINT if fmt == "tflite" and missing == ["litert_torch"] else (
            f"{EXPORT_HINT}" + (f" and {TFLITE_EXPORT_HINT}" if fmt == "tflite" else ""))
        raise BackendUnavailable(f"{fmt} export needs {', '.join(missing)}: {hint}")


def _print(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(row), flush=True)
    else:
        print(f"{row['bundle']}: {row['model_id']}, {row['model_mb']} MB, cosine to PyTorch "
              f"min {row['parity_cosine_min']:.5f} mean {row['parity_cosine_mean']:.5f} "
              f"({row['parity_crops']} crops)", flush=True)


def cmd_export(args: argparse.Namespace) -> int:
    fmt = args.export_command
    require(fmt)
    import torch

    from .bundles import BundleRefused, export_checkpoint_bundles
    from .checkpoint import load_checkpoint, thresholds_from_report

    torch.set_num_threads(max(1, args.threads))
    net, extras = load_checkpoint(args.checkpoint, net_config=args.net_config, default_fmr=args.fmr)
    report = dict(extras["evaluation"])
    thresholds = extras["thresholds"]
    if args.evaluation:
        try:
            report = json.loads(args.evaluation.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ExportError(f"{args.evaluation}: unreadable evaluation report ({exc})") from None
        thresholds = thresholds_from_report(report, args.fmr, source=f"{args.evaluation.name}")
    if args.threshold is not None:
        from facegate.edge.embed.base import Thresholds

        by_fmr = thresholds.by_fmr if thresholds else {}
        thresholds = Thresholds(float(args.threshold), by_fmr, "given on the command line (facegate export)")
    try:
        made = export_checkpoint_bundles(
            net, extras, args.out, fmt, report=report, thresholds=thresholds, calib=args.calib,
            parity_source=args.parity, calib_count=args.calib_count, parity_count=args.parity_count, seed=args.seed,
            name=args.name, version=args.version, min_int8_cosine=args.min_int8_cosine, threads=args.threads)
    except BundleRefused as exc:
        for b in exc.written:  # e.g. the fp32 bundle: written and verified, still usable
            _print(b.row(), args.json)
        raise
    for b in made:
        _print(b.row(), args.json)
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``facegate export onnx|tflite`` to the top-level ``subparsers``; returns the ``export`` parser."""
    export = subparsers.add_parser(
        "export", help="ONNX / TFLite model bundles (fp32 + INT8) of a trained network (extra 'export')",
        description="Export a trained network as two bundles per format, fp32 and INT8, each checked against "
                    "PyTorch on real crops. Needs the 'export' extra (and 'tflite-export' for TFLite).")
    steps = export.add_subparsers(dest="export_command", required=True, metavar="FORMAT")
    for fmt, what in (("onnx", "ONNX fp32 + static INT8 (onnxruntime QDQ)"),
                      ("tflite", "TFLite fp32 + full INT8 (litert-torch PT2E)")):
        p = steps.add_parser(fmt, help=what, description=f"{what} bundles from a checkpoint.")
        p.add_argument("checkpoint", type=Path,
                       help="training checkpoint.pt (or its run folder), weights .pt, or a plain state_dict .pt")
        p.add_argument("--out", type=Path, required=True, help="folder for the bundle folders")
        p.add_argument("--calib", type=Path, default=None,
                       help="calibration crops: prepared training cache, eval set or .npy "
                            "(default: the checkpoint's training cache)")
        p.add_argument("--parity", type=Path, default=None,
                       help="crops for the parity check (default: the checkpoint's eval set, else --calib)")
        p.add_argument("--calib-count", type=int, default=300, help="calibration crops (default: %(default)s)")
        p.add_argument("--parity-count", type=int, default=500, help="parity crops (default: %(default)s)")
        p.add_argument("--net-config", type=Path, default=None, help="NetConfig JSON for a plain state_dict")
        p.add_argument("--evaluation", type=Path, default=None,
                       help="LFW-half report JSON for thresholds and figures (default: the checkpoint's)")
        p.add_argument("--threshold", type=float, default=None, help="default distance threshold (overrides)")
        p.add_argument("--fmr", default="1e-4", help="FMR whose threshold is the default (default: %(default)s)")
        p.add_argument("--name", default="facegate-mfn", help="bundle name prefix (default: %(default)s)")
        p.add_argument("--version", default=None, help="bundle version (default: the recipe's bundle_version)")
        p.add_argument("--min-int8-cosine", type=float, default=0.98,
                       help="refuse an INT8 bundle whose mean cosine to PyTorch is lower (default: %(default)s)")
        p.add_argument("--threads", type=int, default=1, help="threads for torch and the runtimes (default: 1)")
        p.add_argument("--seed", type=int, default=0, help="crop sampling seed (default: 0)")
        p.add_argument("--json", action="store_true", help="one JSON line per bundle")
        p.set_defaults(func=cmd_export)
    return export
