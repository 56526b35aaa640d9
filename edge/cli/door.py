"""CLI commands of the daemon side: run, demo, doctor."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_run(args: argparse.Namespace) -> int:
    import logging

    from ..service.daemon import run_daemon

    if not args.debug:
        logging.getLogger().setLevel(logging.INFO)
    from .defaults import daemon_config

    return run_daemon(daemon_config(args.config))


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo.run import run_demo

    result = run_demo(embedder=args.embedder, fps=args.fps, seed=args.seed, out=None if args.json else sys.stdout,
                      mqtt=args.mqtt)
    if args.json:
        print(json.dumps({
            "frames": result.frames, "grants": len(result.grants), "wrong_grants": result.wrong_grants,
            "visits_of_enrolled": result.visits_of_enrolled, "fps": round(result.fps, 2),
            "processing_ms_median": round(result.processing_ms_median, 1),
            "decision_latency_s": [round(x, 3) for x in result.decision_latency_s],
        }))
    ok = result.wrong_grants == 0 and len(result.grants) == result.visits_of_enrolled
    return 0 if ok else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import cmd_doctor as doctor

    return doctor(args)


def cmd_relock(args: argparse.Namespace) -> int:
    """``facegate relock``: drive the lock's output to locked and exit.

    systemd runs it as ``ExecStopPost=`` after the daemon ends for any reason,
    SIGKILL and crashes included: a GPIO line keeps its last level when the
    process holding it dies, so the door must be relocked from outside.
    """
    from ..config import Config
    from ..lock import create_lock
    from .defaults import daemon_config

    cfg = Config.load(daemon_config(args.config))  # the daemon's own config, found as facegate run finds it
    create_lock(cfg.lock).close()
    print(f"{cfg.lock.type} lock on pin {cfg.lock.pin}: locked")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    """``facegate config check FILE``: parse and check every key, print the effective config.

    A ``[match] threshold`` looser than the model was measured at is refused
    here too, as ``facegate run`` refuses it (unless allow_unsafe_threshold).
    """
    from ..config import Config
    from ..errors import ConfigError
    from ..service.preflight import check_config_threshold

    cfg = Config.load(args.file)
    try:
        check_config_threshold(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{args.file}: {exc}") from None
    if args.json:
        print(json.dumps(cfg.to_dict()))
    else:
        print(f"{args.file}: ok")
    return 0


def register(sub, add) -> None:
    p = add("run", cmd_run, "run the door daemon (what the systemd service starts)", gallery=False, model=False)
    p.add_argument("--config", type=Path, default=None,
                   help="default: $FACEGATE_CONFIG, else /etc/facegate/facegate.toml")
    p = add("relock", cmd_relock, "drive the lock to locked and exit (the service's ExecStopPost)",
            gallery=False, model=False)
    p.add_argument("--config", type=Path, default=None,
                   help="default: $FACEGATE_CONFIG, else /etc/facegate/facegate.toml")
    p = add("demo", cmd_demo, "run the real door loop on a built-in scenario with a simulated lock",
            gallery=False, model=False)
    from ..embed import DEFAULT_EMBEDDER

    p.add_argument("--embedder", default=DEFAULT_EMBEDDER,
                   help="the model the demo door runs (default: %(default)s)")
    p.add_argument("--fps", type=float, default=10.0, help="replay rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="draws the scenario's variations (default: %(default)s)")
    p.add_argument("--mqtt", metavar="HOST:PORT", default=None,
                   help="also publish the decisions to this MQTT broker, as the door would (docs/home-assistant.md)")
    p = add("config", cmd_config_check, "check a config file (facegate config check FILE)", gallery=False, model=False)
    p.add_argument("action", choices=["check"], help="check: parse FILE and check every key")
    p.add_argument("file", type=Path, help="the config file (the door's: /etc/facegate/facegate.toml)")
    p = add("doctor", cmd_doctor, "check config, model, gallery and its key, camera, GPIO, clock and service",
            gallery=False, model=False)
    p.add_argument("--config", type=Path, default=None,
                   help="default: $FACEGATE_CONFIG, else /etc/facegate/facegate.toml if it exists (as the CLI)")
    p.add_argument("--no-camera", action="store_true", help="do not open the camera")
