"""The ``facegate`` command: enroll, verify, identify, evaluate, benchmark, run.

Exit codes: 0 accept / match / success, 1 reject / not in database, 2 error.
Bad input gets one line on stderr, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from ..errors import FacegateError
from .argtypes import positive_int

log = logging.getLogger("facegate")

EXIT_OK, EXIT_REJECT, EXIT_ERROR = 0, 1, 2


def default_gallery() -> Path:
    """The gallery when no config is in effect (see :mod:`.defaults` for the whole lookup)."""
    from .defaults import user_gallery

    return user_gallery()


def follow_door_config(args: argparse.Namespace) -> None:
    """Without ``--config``: the config the daemon reads ($FACEGATE_CONFIG, /etc/facegate/facegate.toml), if any."""
    from .defaults import choose_config

    choice = choose_config(getattr(args, "config", None))
    args.config, args.config_choice = choice.path, choice


def _emit(args: argparse.Namespace, obj: dict, text: str) -> None:
    print(json.dumps(obj) if args.json else text, flush=True)


def door_config(args: argparse.Namespace):
    """The door's config (``--config``) with this command's flags laid over it.

    With ``--config`` the CLI uses the door's gallery, embedder, detector and
    quality gate, so what is enrolled is what the door sees; flags given
    explicitly still win.
    """
    from dataclasses import replace

    from ..config import Config

    cfg = Config.load(args.config) if getattr(args, "config", None) else Config.default()
    if getattr(args, "embedder", None) is not None and args.embedder != cfg.embedder.name:
        # a threshold belongs to the model it was calibrated for: another model uses its own
        cfg = replace(cfg, embedder=replace(cfg.embedder, name=args.embedder),
                      match=replace(cfg.match, threshold=None, margin=None))
    if getattr(args, "threads", None) is not None:
        cfg = replace(cfg, embedder=replace(cfg.embedder, threads=args.threads),
                      detector=replace(cfg.detector, threads=args.threads))
    if getattr(args, "min_face", None) is not None:
        cfg = replace(cfg, detector=replace(cfg.detector, min_face_size=args.min_face))
    return cfg


def _gallery_path(args: argparse.Namespace) -> Path:
    if getattr(args, "gallery", None) is not None:
        return Path(args.gallery)
    if getattr(args, "config", None):
        return Path(door_config(args).storage.gallery)
    choice = getattr(args, "config_choice", None)
    if choice is not None and choice.unreadable is not None:
        from ..errors import ConfigError

        raise ConfigError(f"{choice.unreadable} exists but this user cannot read it, so the door's gallery is "
                          "unknown: run the command with sudo, or give --gallery PATH (or --config FILE)")
    return default_gallery()


def _pipeline(args: argparse.Namespace):
    from ..pipeline import create_pipeline

    return create_pipeline(door_config(args))


def _gallery(args: argparse.Namespace, readonly: bool = False, **kwargs):
    """The gallery with the template key and file mode of ``--key-file`` / the config's ``[storage]``."""
    from ..gallery import Gallery
    from ..gallery.files import file_mode

    storage = door_config(args).storage if getattr(args, "config", None) else None
    key_file = getattr(args, "key_file", None) or (storage.key_file if storage is not None else None)
    mode = file_mode(storage.group_readable if storage is not None else False)
    return Gallery(_gallery_path(args), readonly=readonly, key_file=key_file, file_mode=mode, **kwargs)


def _match_obj(j) -> dict:
    m = j.match
    return {
        "accepted": m.accepted,
        "name": m.name,
        "best_name": m.best_name,
        "distance": None if m.distance == float("inf") else round(m.distance, 4),
        "threshold": round(m.threshold, 4),
        "runner_up": m.runner_up,
        "margin": None if m.margin is None else round(m.margin, 4),
        "model_id": m.model_id,
        "faces_seen": j.faces_seen,
    }


# --- commands -----------------------------------------------------------------------
def cmd_enroll(args: argparse.Namespace) -> int:
    """Photos, a folder of photos, or --camera; every template sanity-checked (edge/enrollment)."""
    from ..enrollment.command import cmd_enroll as guided

    return guided(args)


def cmd_remove(args: argparse.Namespace) -> int:
    with _gallery(args) as gallery:
        n = gallery.remove(args.name)
    _emit(args, {"name": args.name, "removed_templates": n, "gallery": str(_gallery_path(args))},
          f"removed {args.name} ({n} template(s)) from {_gallery_path(args)}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    path = _gallery_path(args)
    if not path.exists():
        _emit(args, {"people": []}, f"no gallery at {path} (enroll someone first)")
        return EXIT_OK
    with _gallery(args, readonly=True) as gallery:
        people = gallery.people()
    if args.json:
        print(json.dumps({"people": [{"name": p.name, "templates": p.templates, "model_ids": sorted(p.model_ids)}
                                     for p in people]}))
    else:
        for p in people:
            print(f"{p.name}\t{p.templates} template(s)\t{', '.join(sorted(p.model_ids))}")
        if not people:
            print("the gallery is empty")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from ..recognition import verify

    pipeline = _pipeline(args)
    cfg = door_config(args)
    threshold = cfg.match.threshold if args.threshold is None else args.threshold  # the door's, as calibrated
    with _gallery(args, readonly=True) as gallery:
        j = verify(pipeline, gallery, args.name, args.image, threshold, limits=cfg.images)
    m = j.match
    text = (f"{'ACCEPT' if m.accepted else 'REJECT'} {args.name}: distance {m.distance:.3f} "
            f"(threshold {m.threshold:.3f}); {j.faces_seen} face(s) seen, judged the largest")
    _emit(args, _match_obj(j), text)
    return EXIT_OK if m.accepted else EXIT_REJECT


def cmd_identify(args: argparse.Namespace) -> int:
    from ..recognition import identify

    from ..operating_threshold import operating_threshold

    pipeline = _pipeline(args)
    cfg = door_config(args)
    with _gallery(args, readonly=True) as gallery:
        # the door's own 1:K threshold (tightened for the gallery's size) unless --threshold says otherwise
        threshold = args.threshold if args.threshold is not None else operating_threshold(
            cfg.match.threshold, pipeline.embedder.thresholds, len(gallery), cfg.match.identification_fmr)
        j = identify(pipeline, gallery, args.image, threshold, limits=cfg.images, margin=cfg.match.margin)
    m = j.match
    margin = "" if m.margin is None else f", runner-up {m.runner_up} {m.margin:+.3f} farther"
    if m.accepted:
        text = f"{m.name}: distance {m.distance:.3f} (threshold {m.threshold:.3f}{margin})"
    else:
        near = "" if m.best_name is None else f"; nearest {m.best_name} at {m.distance:.3f}"
        text = f"not in database (threshold {m.threshold:.3f}{near})"
    text += f"; {j.faces_seen} face(s) seen, judged the largest"
    _emit(args, _match_obj(j), text)
    return EXIT_OK if m.accepted else EXIT_REJECT


def cmd_embed(args: argparse.Namespace) -> int:
    """One JSON line per image, many images per process: for scripts."""
    from ..imageio import load_image

    pipeline = _pipeline(args)
    limits = door_config(args).images
    failed = 0
    for path in args.images:
        row: dict = {"path": path, "model_id": pipeline.model_id}
        try:
            face, seen = pipeline.embed_one(load_image(path, limits), single=args.single, gated=not args.no_gate)
            assert face.embedding is not None
            row.update(faces_seen=seen, box=[round(v, 1) for v in face.detection.box],
                       embedding=[round(float(v), 6) for v in face.embedding.vector])
        except FacegateError as exc:
            failed += 1
            row["error"] = str(exc)
            row["error_type"] = type(exc).__name__
        print(json.dumps(row), flush=True)
    return EXIT_OK if not failed else EXIT_ERROR


def cmd_eval(args: argparse.Namespace) -> int:
    from ..eval.evaluate import EVAL_MIN_FACE, evaluate_lfw
    from ..eval.lfw import LFW_ENV, lfw_root

    root = lfw_root(args.data)
    if root is None:
        raise FacegateError(f"which LFW folder? give --data DIR (it holds pairs.txt and lfw-deepfunneled/) "
                            f"or set ${LFW_ENV}")
    args.embedder = door_config(args).embedder.name
    scores: dict = {}
    try:
        report = evaluate_lfw(args.embedder, root=root, workers=args.workers,
                              min_face=args.min_face or EVAL_MIN_FACE,
                              official=args.official, progress=not args.json and sys.stderr.isatty() or args.progress,
                              on_scores=(lambda g, i: scores.update(genuine=g, impostor=i)) if args.report else None)
    except FileNotFoundError as exc:
        raise FacegateError(str(exc)) from None
    if args.report:
        from ..calibrate.command import write_eval_report

        report["report"] = write_eval_report(args.report, report, scores["genuine"], scores["impostor"])
    if args.save_thresholds:
        from ..eval.evaluate import save_thresholds

        save_thresholds(report, args.save_thresholds)
    if args.record:
        from ..embed import resolve_bundle
        from ..eval.evaluate import record_in_bundle

        folder = resolve_bundle(args.embedder)
        if folder is None:
            raise FacegateError(f"--record needs a model bundle, not {args.embedder!r}")
        log.info("figures recorded in %s", record_in_bundle(report, folder))
    if args.json:
        print(json.dumps(report))
    else:
        from ..eval.evaluate import format_report

        print(format_report(report))
        if args.report:
            print("  report: " + ", ".join(report["report"]))
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """Rows on stdout; an embedder that cannot be built here is one "skipped" line on stderr.

    Of the default list only the installed ones are measured (exit 0); one
    named with ``--embedders`` that cannot be built makes the exit code 2,
    after the others were measured.
    """
    from ..eval.bench import DEFAULT_EMBEDDERS, Skipped, run_bench

    named = args.embedder_list is not None
    failed = measured = 0
    for row in run_bench(args.embedder_list or DEFAULT_EMBEDDERS, threads=args.thread_list, repeats=args.repeats,
                         data=args.data):
        if isinstance(row, Skipped):
            failed += named or row.crashed
            print(f"facegate bench: {row.line()}", file=sys.stderr, flush=True)
            continue
        measured += 1
        print(json.dumps(row) if args.json else "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if not measured:
        print("facegate bench: error: no embedder could be measured", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_ERROR if failed else EXIT_OK


# --- parser --------------------------------------------------------------------------
def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _counts(text: str) -> list[int]:
    return [positive_int(x.strip()) for x in text.split(",") if x.strip()] or [positive_int(text)]


def _common(p: argparse.ArgumentParser, gallery: bool = True, model: bool = True) -> None:
    from ..align import MIN_FACE_PX
    from ..embed import DEFAULT_EMBEDDER

    if gallery or model:
        p.add_argument("--config", type=Path, default=None,
                       help="the door's config file: use its gallery, embedder, detector and quality gate "
                            "(default: $FACEGATE_CONFIG, else /etc/facegate/facegate.toml if it exists)")
        p.set_defaults(follows_door_config=True)
    if gallery:
        p.add_argument("--gallery", type=Path, default=None,
                       help=f"gallery database (default: the config's, else {default_gallery()})")
        p.add_argument("--key-file", type=Path, default=None,
                       help="the gallery's template key (default: the config's, else gallery.key beside the gallery)")
    if model:
        p.add_argument("--embedder", default=os.environ.get("FACEGATE_EMBEDDER"),
                       help="facenet, dlib, a shipped bundle's name (facegate-mfn-onnx-int8, ...) or a bundle folder "
                            f"(default: the config's, else {DEFAULT_EMBEDDER})")
        p.add_argument("--threads", type=positive_int, default=None, help="inference threads (default: 1)")
        p.add_argument("--min-face", type=positive_int, default=None,
                       help=f"smallest face to detect, in pixels (default: the config's, else {MIN_FACE_PX})")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    from ..eval.lfw import LFW_ENV

    parser = _Parser(prog="facegate", description=__doc__.split("\n")[0],
                     epilog="facegate COMMAND --help says more about each command")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the installed version and exit")
    parser.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str, **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=fn)
        _common(p, **kw)
        return p

    p = add("enroll", cmd_enroll, "enroll a person from photos, a folder of photos, or a guided camera session")
    p.add_argument("name", help="the person's name, as the door will report it")
    p.add_argument("images", nargs="*", help="photos of one face each, or one folder of them (or --camera)")
    p.add_argument("--allow-lookalike", action="store_true",
                   help="enroll a new name even if it looks like an enrolled one (Cyrillic/fullwidth letters, case)")
    from ..enrollment.command import add_enroll_arguments

    add_enroll_arguments(p)
    p = add("remove", cmd_remove, "remove a person and all their templates", model=False)
    p.add_argument("name", help="the enrolled name to remove")
    add("list", cmd_list, "list enrolled people", model=False)
    for name, fn, help in (("verify", cmd_verify, "1:1: is the face in IMAGE the enrolled NAME?"),
                           ("identify", cmd_identify, "1:K: who in the gallery is the face in IMAGE?")):
        p = add(name, fn, help)
        if name == "verify":
            p.add_argument("name", help="the enrolled name to check the face against")
        p.add_argument("image", help="a photo; the largest face in it is judged")
        p.add_argument("--threshold", type=float, default=None, help="distance threshold (default: the door's, "
                       "from --config, else the model's; identify tightens it for the gallery's size)")
    p = add("embed", cmd_embed, "print one JSON line per image with its embedding", gallery=False)
    p.add_argument("images", nargs="+", help="photos, each embedded on its own (one JSON line each)")
    p.add_argument("--single", action="store_true", help="refuse images with several faces")
    p.add_argument("--no-gate", action="store_true", help="embed faces that fail the quality gate too")
    p.set_defaults(json=True)

    p = add("eval", cmd_eval, "evaluate an embedder on a benchmark through the full pipeline", gallery=False)
    p.add_argument("benchmark", choices=["lfw"], help="the benchmark: lfw (the LFW-half protocol)")
    p.add_argument("--data", type=Path, default=None,
                   help=f"LFW folder holding pairs.txt and lfw-deepfunneled/ (default: ${LFW_ENV}; one is needed)")
    p.add_argument("--workers", type=positive_int, default=max(1, (os.cpu_count() or 1)),
                   help="processes (default: all cores)")
    p.add_argument("--official", action="store_true", help="also the official 10-fold accuracy")
    p.add_argument("--progress", action="store_true", help="progress bar even with --json")
    p.add_argument("--save-thresholds", type=Path, default=None, metavar="JSON",
                   help="merge the measured thresholds into this table (edge/data/reference_thresholds.json)")
    p.add_argument("--record", action="store_true",
                   help="keep the figures in the evaluated bundle's manifest (evaluation.pipeline)")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="write summary.txt and, with matplotlib, det.png and scores.png there")

    p = add("bench", cmd_bench, "per-stage latency and memory of each embedder", gallery=False, model=False)
    p.add_argument("--embedders", dest="embedder_list", default=None, type=_names,
                   help="comma-separated (default: those of facegate-irn, facenet, dlib that are installed)")
    p.add_argument("--threads", dest="thread_list", default=[1, 2], type=_counts,
                   help="comma-separated thread counts, each measured apart (default: 1,2)")
    p.add_argument("--repeats", type=positive_int, default=20, help="timed runs per figure (default: %(default)s)")
    p.add_argument("--data", type=Path, default=None,
                   help=f"LFW folder for real frames (default: ${LFW_ENV}, else a public-domain portrait)")
    _register_more(sub, add)
    _debug_anywhere(parser)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facegate")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _subparsers(parser: argparse.ArgumentParser):
    """Every parser below ``parser`` (commands and their actions), each once."""
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if id(child) not in seen:
                    seen.add(id(child))
                    yield child
                    yield from _subparsers(child)


def _debug_anywhere(parser: argparse.ArgumentParser) -> None:
    """``--debug`` also after the command (``facegate run --debug``), without resetting one given before it."""
    for child in _subparsers(parser):
        if "--debug" not in child._option_string_actions:
            child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="verbose logs and tracebacks (also before the command)")


#: Entry-point group through which other facegate packages (training, export)
#: add subcommands, so that the edge runtime never imports them.
COMMAND_PLUGINS = "facegate.commands"


def _register_more(sub, add) -> None:
    """Commands of the daemon side, then those that other packages register."""
    from importlib.metadata import entry_points

    from . import door, gallery

    door.register(sub, add)
    gallery.register(sub, add)
    from ..calibrate import command as calibrate_command  # calibrate, audit

    calibrate_command.register(sub, add)
    for ep in sorted(entry_points(group=COMMAND_PLUGINS), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except Exception as exc:  # a broken plugin must not take the door's CLI down
            log.warning("facegate command plugin %s failed to load: %s", ep.name, exc)
    from ..mqtt.cli import register as register_mqtt  # after the others: it adds to `gallery` if there is one

    register_mqtt(sub, add)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _refuse(args: argparse.Namespace, exc: BaseException, line: str) -> None:
    """The one line on stderr; with ``--json`` also a JSON object on stdout, so a script reads every answer there."""
    if getattr(args, "json", False):
        try:
            print(json.dumps({"error": _one_line(exc), "error_type": type(exc).__name__}), flush=True)
        except (BrokenPipeError, ValueError):  # stdout gone: the stderr line still says it
            pass
    print(line, file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """argparse with facegate's refusal: one line on stderr, exit code 2 (argparse also prints usage)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a refused argument (2), already printed
        return int(exc.code or 0)
    if args.command is None:  # `facegate` alone: what it can do, not a complaint
        parser.print_help()
        return EXIT_OK
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "follows_door_config", False):
        follow_door_config(args)
    try:
        return args.func(args)
    except FacegateError as exc:
        if args.debug:
            raise
        _refuse(args, exc, f"facegate {args.command}: error: {_one_line(exc)}")
        return EXIT_ERROR
    except Exception as exc:  # a bug, not bad input: still one line, the traceback with --debug
        if args.debug:
            raise
        log.debug("unexpected error", exc_info=True)
        _refuse(args, exc, f"facegate {args.command}: unexpected error: {type(exc).__name__}: {_one_line(exc)} "
                "(--debug shows the traceback)")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
