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

from facegate.edge.errors import BackendUnavailable

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


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``facegate train prepare`` to the top-level ``subparsers``; returns the ``train`` parser.

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
