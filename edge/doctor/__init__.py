"""`facegate doctor`: every part a door needs, checked, each problem with its fix.

:mod:`.checks` holds the checks, :mod:`.devices` who may open and who holds a
device node, :mod:`.clock` the clock's synchronisation, :mod:`.unit` what
the installed systemd unit starts with.
"""

from __future__ import annotations

from pathlib import Path

from ..cli.defaults import ConfigChoice, choose_config
from .checks import Doctor
from .report import Check, attempt

__all__ = ["Check", "Doctor", "diagnose"]


def diagnose(config: Path | str | ConfigChoice | None = None, camera: bool = True, **kwargs) -> list[Check]:
    """Run every check; ``config`` is ``--config`` (None: where the CLI and the daemon look)."""
    choice = config if isinstance(config, ConfigChoice) else choose_config(config)
    doctor = Doctor(choice, camera=camera, **kwargs)
    return [attempt(name, fn) for name, fn in doctor.checks()]
