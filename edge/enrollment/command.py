"""CLI: ``facegate enroll NAME PHOTO...``, ``facegate enroll NAME DIR/`` and ``facegate enroll NAME --camera``.

The sanity checks run at the door's threshold (``[match] threshold`` with
``--config``, else the model bundle's); each refusal names the flag that
overrides it. Exit codes: 0 enrolled (or only copies skipped), 2 refused or
an error, with one line saying why.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from ..cli.argtypes import whole_number
from ..errors import CameraError, ConfigError

__all__ = ["add_enroll_arguments", "cmd_enroll"]


_frames = whole_number(1, 50, "1 to 50 frames")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0 to 3600 seconds, got {text}")
    return value


def add_enroll_arguments(p: argparse.ArgumentParser) -> None:
    """The guided-enrollment flags of ``facegate enroll`` (the parser already has NAME and the images)."""
    p.add_argument("--camera", action="store_true",
                   help="a guided session at the door's camera ([camera] of --config): a few poses, good frames only")
    p.add_argument("--frames", type=_frames, default=5, help="with --camera: templates to take (default 5)")
    p.add_argument("--timeout", type=_seconds, default=60.0, help="with --camera: give up after this many seconds")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="enroll a face that does not look like the person's other templates")
    p.add_argument("--allow-duplicate", action="store_true",
                   help="store a near-copy of a template the person already has")
    p.add_argument("--allow-other-person", action="store_true",
                   help="enroll a face that the door would take for another enrolled person")


def _rules(args: argparse.Namespace, pipeline):
    from ..recognition import threshold_for
    from .sanity import EnrollRules

    door = None
    if getattr(args, "config", None):
        from ..cli.main import door_config

        door = door_config(args).match.threshold
    return EnrollRules.for_threshold(threshold_for(pipeline, door), allow_mismatch=args.allow_mismatch,
                                     allow_duplicate=args.allow_duplicate,
                                     allow_other_person=args.allow_other_person)


def _open_camera(camera):
    """The door's camera, opened (the session reads it); one line and the fix ``facegate doctor`` gives if not."""
    from ..camera import CAMERA_FIX, create_source

    source = create_source(camera)
    try:
        source.open()
    except CameraError as exc:
        source.close()
        raise type(exc)(f"{' '.join(str(exc).split())}; fix: {CAMERA_FIX} (facegate doctor checks it all)") from None
    return source


def cmd_enroll(args: argparse.Namespace) -> int:
    from ..cli.main import (
        EXIT_OK,
        _emit,
        _gallery,
        _gallery_path,
        _pipeline,
        door_config,
    )

    images = list(args.images or [])
    if args.camera and images:
        raise ConfigError("give photos or --camera, not both")
    if not args.camera and not images:
        raise ConfigError("say what to enroll from: photos, a folder of photos, or --camera")
    folder = len(images) == 1 and Path(images[0]).is_dir()
    pipeline = _pipeline(args)
    rules = _rules(args, pipeline)
    cfg = door_config(args)
    source = _open_camera(cfg.camera) if args.camera else None  # before the gallery: a failed probe writes nothing
    # human-readable lines go to stderr with --json, so stdout stays one JSON object
    say = sys.stderr if args.json else sys.stdout
    with source if source is not None else nullcontext(), _gallery(args) as gallery:  # the camera closed whatever
        if source is not None:
            from .session import enroll_camera

            gap = 0.0 if cfg.camera.type == "replay" else 0.5  # a replay is read as fast as it goes
            if sys.stdin.isatty() and not args.json:
                input(f"{args.name}: stand where you open the door, facing the camera, then press Enter ")
            verdicts, total, _ = enroll_camera(pipeline, gallery, args.name, source, rules,
                                               frames=args.frames, out=sys.stderr, timeout_s=args.timeout,
                                               min_gap_s=gap, allow_lookalike=args.allow_lookalike)
        else:
            from .session import enroll_images, photos_in

            def report(v) -> None:  # photos named one by one: a refusal is the error line itself
                if folder or v.status == "skipped":
                    print(v.line(), file=say, flush=True)

            paths = photos_in(images[0]) if folder else images
            verdicts, total = enroll_images(pipeline, gallery, args.name, paths, rules, strict=not folder,
                                            limits=cfg.images, allow_lookalike=args.allow_lookalike, report=report)
    taken = [v for v in verdicts if v.taken]
    skipped = sum(v.status == "skipped" for v in verdicts)
    refused = sum(v.status == "refused" for v in verdicts)
    extra = "".join(f", {n} {w}" for n, w in ((skipped, "skipped"), (refused, "refused")) if n)
    where = _gallery_path(args)
    _emit(args, {"name": args.name, "added": len(taken), "skipped": skipped, "refused": refused,
                 "templates": total, "model_id": pipeline.model_id, "gallery": str(where),
                 "photos": [{"source": v.source, "status": v.status, "reason": v.reason} for v in verdicts]},
          f"enrolled {args.name}: {len(taken)} template(s) added{extra}, {total} in all ({pipeline.model_id}) "
          f"in {where}")
    return EXIT_OK
