"""`facegate doctor`: print the checks of :mod:`facegate.edge.doctor`, one line (or JSON row) each."""

from __future__ import annotations

import argparse
import json

from ..doctor import Check, diagnose

__all__ = ["Check", "cmd_doctor", "diagnose", "format_check"]


def format_check(c: Check) -> str:
    fix = f"\n      fix: {c.fix}" if c.fix else ""
    return f"{c.status.upper():4}  {c.name:9} {c.message}{fix}"


def cmd_doctor(args: argparse.Namespace) -> int:
    """Exit 0 when nothing failed (warnings allowed), 2 when a check failed."""
    checks = diagnose(args.config, camera=not args.no_camera)
    for c in checks:
        print(json.dumps(c.to_dict()) if args.json else format_check(c), flush=True)
    return 2 if any(not c.ok for c in checks) else 0
