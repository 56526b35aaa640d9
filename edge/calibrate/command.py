"""CLI: ``facegate calibrate`` (and ``calibrate background``), ``facegate audit`` (and ``audit mark``).

Exit codes as everywhere: 0 done, 1 the target FMR is not supported (nothing
written), 2 an error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..cli.argtypes import positive_int
from ..errors import AuditError, ConfigError, FacegateError

EXIT_OK, EXIT_REFUSED, EXIT_ERROR = 0, 1, 2


def _fmr(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate such as 1e-4, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value < 1):
        raise argparse.ArgumentTypeError(f"expected a rate between 0 and 1, got {text!r}")
    return value


# --- facegate calibrate ---------------------------------------------------------------
def cmd_calibrate(args: argparse.Namespace) -> int:
    if getattr(args, "calibrate_action", None) == "background":
        return cmd_background(args)
    from ..cli.main import _gallery_path, door_config
    from .door import calibrate_door
    from .report import format_calibration, write_report

    if args.probes is None and not args.camera:
        raise ConfigError("say where the genuine scores come from: --probes DIR or --camera")
    cfg = door_config(args)
    interactive = args.camera and sys.stdin.isatty() and not args.json

    def wait(name: str) -> None:
        if interactive:
            input(f"{name}: stand about where you open the door, facing the camera, then press Enter ")

    run = calibrate_door(cfg, _gallery_path(args), probes_dir=args.probes, camera=args.camera,
                         people=args.person or None, frames=args.frames, target_fmr=args.target_fmr,
                         background=not args.no_background, feedback=not args.no_feedback, wait=wait)
    cal = run.calibration
    summary = format_calibration(cal)
    if run.probes.refused:
        summary += f"\n  {len(run.probes.refused)} probe image(s) gave no usable face (--debug lists them)"
    written = None
    refused = not cal.choice.supported
    # only a config named with --config is written to, never one the CLI found by itself (/etc/facegate/...)
    choice = getattr(args, "config_choice", None)
    named = args.config is not None and (choice is None or choice.origin == "--config")
    if named and not args.dry_run and not refused:
        from .configfile import write_match

        # a margin of 0 changes nothing: written only when it refuses something or replaces a set one
        margin = cal.margin.margin if cal.margin is not None else None
        if margin is not None and margin <= 0 and cfg.match.margin is None:
            margin = None
        update = write_match(args.config, cal.choice.threshold, margin)
        written = str(update.path)
        summary += f"\n  written to {update.path} [match] (the previous line is kept there, commented out)"
    elif refused:
        summary += "\n  nothing written: the data does not support the target (see advice)"
    else:
        summary += "\n  nothing written (" + ("--dry-run" if args.dry_run else "give --config FILE to write it") + ")"
    files: list[str] = []
    if args.report is not None:
        paths, _ = write_report(args.report, summary, run.scores.genuine, run.scores.impostor, cal.choice.threshold,
                                f"facegate calibrate: {cal.model_id}")
        files = [str(p) for p in paths]
        if run.scores.head_genuine is not None and cal.head is not None:
            from .report import plots_available, write_plots

            if plots_available():
                files += [str(p) for p in write_plots(
                    Path(args.report) / "binary_head", run.scores.head_genuine, run.scores.head_impostor,
                    cal.head.threshold, f"binary head: {cal.model_id}", "1 - P(same) (accept <= threshold)")]
    if args.json:
        obj = cal.to_json()
        obj.update(written=written, report=files, feedback_used=run.feedback_used,
                   probes_refused=len(run.probes.refused), background_people=run.background_people)
        print(json.dumps(obj))
    else:
        print(summary)
        if files:
            print(f"  report: {', '.join(files)}")
    return EXIT_REFUSED if refused else EXIT_OK


def cmd_background(args: argparse.Namespace) -> int:
    from ..embed import DEFAULT_EMBEDDER
    from .background import build_background

    try:
        entry = build_background(args.embedder or DEFAULT_EMBEDDER, lfw_root=args.data, per_person=args.per_person,
                                 workers=args.workers, progress=not args.json and sys.stderr.isatty())
    except FileNotFoundError as exc:
        raise FacegateError(str(exc)) from None
    if args.json:
        print(json.dumps(entry))
    else:
        print(f"{entry['model_id']}: {entry['embeddings']} background embeddings of {entry['people']} people "
              f"written ({entry['file']}, sha256 {entry['sha256'][:12]}...)")
    return EXIT_OK


def write_eval_report(folder: Path, report: dict, genuine, impostor) -> list[str]:
    """``facegate eval --report DIR``: the evaluation's summary and plots, at the FMR-1e-4 threshold."""
    from ..eval.evaluate import format_report
    from .report import write_report

    threshold = report["threshold_far_1e-4"]
    title = f"{report['model_id']} on {report['protocol']} (split B, all pairs)"
    files, _ = write_report(folder, format_report(report) + f"\n  plotted threshold: {threshold:.4f} (FAR 1e-4)",
                            genuine, impostor, threshold, title)
    return [str(f) for f in files]


# --- facegate audit --------------------------------------------------------------------
def _audit_log(args: argparse.Namespace):
    from ..audit import AuditLog
    from ..cli.main import _gallery_path

    path = _gallery_path(args)
    if not path.is_file():
        raise AuditError(f"no gallery at {path}: the audit log lives in the door's gallery file")
    # Listing and marking must not prune: retention is the daemon's business.
    return AuditLog(path, retention_days=None, max_events=None)


def cmd_audit(args: argparse.Namespace) -> int:
    if getattr(args, "audit_action", None) == "mark":
        return cmd_audit_mark(args)
    from datetime import datetime

    from ..audit import list_decisions

    outcomes = tuple(args.outcome) if args.outcome else ("grant", "deny")
    with _audit_log(args) as log:
        entries = list_decisions(log, args.limit, outcomes)
    if args.json:
        for e in entries:
            print(json.dumps(e.__dict__))
        return EXIT_OK
    if not entries:
        print("no decisions recorded yet")
        return EXIT_OK
    print("    id  time                 outcome  name          nearest       distance  threshold  mark")
    for e in entries:
        when = datetime.fromtimestamp(e.timestamp).strftime("%Y-%m-%d %H:%M:%S")
        dist = "-" if e.distance is None else f"{e.distance:.3f}"
        thr = "-" if e.threshold is None else f"{e.threshold:.3f}"
        mark = ("WRONG" + (f" (was {e.actual})" if e.actual else "")) if e.marked_wrong else (
            "" if e.markable else "(too old to mark)")
        print(f"{e.id:6d}  {when}  {e.outcome:7}  {e.name or '-':12.12}  {e.best_name or '-':12.12}  "
              f"{dist:>8}  {thr:>9}  {mark}")
    print("mark a wrong one: facegate audit mark ID --wrong [--was NAME]")
    return EXIT_OK


def cmd_audit_mark(args: argparse.Namespace) -> int:
    from ..audit import clear_mark, mark_wrong

    if args.clear == args.wrong:
        raise AuditError("say --wrong (the decision was wrong) or --clear (take a mark back)")
    with _audit_log(args) as log:
        if args.clear:
            had = clear_mark(log, args.id)
            obj, text = {"id": args.id, "cleared": had}, (f"decision {args.id}: mark taken back" if had else
                                                          f"decision {args.id} was not marked")
        else:
            from ..cli.main import _gallery

            with _gallery(args, readonly=True) as gallery:  # its key sealed the decision's embedding
                cipher = gallery.template_cipher()
                enrolled = {p.name for p in gallery.people()}
            if args.was is not None and args.was not in enrolled:
                raise AuditError(f"--was {args.was}: nobody of that name is enrolled (facegate list shows who is); "
                                 "leave --was out when it was a stranger")
            fb = mark_wrong(log, args.id, args.was, cipher=cipher)
            role = ("impostor" if fb.outcome == "grant" else "genuine")
            obj = {"id": fb.event_id, "outcome": fb.outcome, "name": fb.name, "actual": fb.actual, "marked": "wrong"}
            text = (f"decision {fb.event_id} ({fb.outcome} {fb.name or ''}".rstrip() + ") marked wrong; it was "
                    f"{fb.actual or 'a stranger'}. Its embedding joins the {role} scores of the next facegate "
                    "calibrate.")
    print(json.dumps(obj) if args.json else text)
    return EXIT_OK


# --- registration -----------------------------------------------------------------------
def _local(p: argparse.ArgumentParser) -> None:
    """Options that may also follow a sub-action (``audit mark 3 --gallery g.db``) without resetting the parent's."""
    p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--gallery", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")


def register(sub, add) -> None:
    """Add ``calibrate`` and ``audit`` to the ``facegate`` parser (called from :mod:`facegate.edge.cli.main`)."""
    from .analysis import DEFAULT_TARGET_FMR

    p = add("calibrate", cmd_calibrate, "the door's threshold from its own camera and household "
            "(calibrate background: build a bundle's background impostor set)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--probes", type=Path, default=None, metavar="DIR",
                     help="probe images: DIR/<name>/*.jpg per enrolled person (other names count as visitors)")
    src.add_argument("--camera", action="store_true", help="a guided session at the door's camera, person by person")
    p.add_argument("--person", action="append", default=None, metavar="NAME",
                   help="with --camera: only these people (repeat; default everyone enrolled)")
    p.add_argument("--frames", type=positive_int, default=20, help="with --camera: frames per person (default 20)")
    p.add_argument("--target-fmr", type=_fmr, default=DEFAULT_TARGET_FMR,
                   help="false-match rate to hold, with 95 %% confidence (default %(default)g)")
    p.add_argument("--no-background", action="store_true", help="leave out the bundle's background impostor set")
    p.add_argument("--no-feedback", action="store_true", help="leave out decisions marked wrong (facegate audit)")
    p.add_argument("--dry-run", action="store_true", help="report only, even with --config")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="write summary.txt and, with matplotlib, det.png and scores.png there")
    actions = p.add_subparsers(dest="calibrate_action", metavar="ACTION")
    b = actions.add_parser("background", help="embed LFW split B into a bundle's background set",
                           description="Embed LFW split B (people never trained on) with a bundle's model and keep "
                                       "the embeddings (float16, no images) in the bundle folder and its manifest.")
    b.add_argument("--embedder", default=argparse.SUPPRESS, help="the bundle (default: the door's)")
    b.add_argument("--data", type=Path, default=None, help="LFW folder (default: ../shared/data/lfw)")
    b.add_argument("--per-person", type=positive_int, default=1, help="images per person (default 1)")
    b.add_argument("--workers", type=positive_int, default=1, help="processes (default 1)")
    b.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    p.set_defaults(data=None, per_person=1, workers=1)

    p = add("audit", cmd_audit, "recent decisions of the door; audit mark ID --wrong feeds calibration",
            model=False)
    p.add_argument("--limit", type=positive_int, default=20, help="how many (default 20)")
    p.add_argument("--outcome", action="append", choices=["grant", "deny", "lockout"], default=None,
                   help="only these outcomes (repeat; default grant and deny)")
    actions = p.add_subparsers(dest="audit_action", metavar="ACTION")
    m = actions.add_parser("mark", help="mark a decision wrong (its embedding joins the next calibration)")
    m.add_argument("id", type=int, help="the decision's id, as facegate audit lists it")
    m.add_argument("--wrong", action="store_true", help="the decision was wrong")
    m.add_argument("--was", default=None, metavar="NAME",
                   help="who it really was (an enrolled name); leave out for a stranger")
    m.add_argument("--clear", action="store_true", help="take a mark back")
    _local(m)
