"""One line of `facegate doctor`: what was checked, whether it is fine, and the fix."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import FacegateError

log = logging.getLogger(__name__)

__all__ = ["Check", "attempt"]

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    """``status``: "ok", "warn" (works, but look) or "fail" (the door will not work as set up)."""

    name: str
    status: str
    message: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "status": self.status, "message": self.message, "fix": self.fix}


def attempt(name: str, fn: Callable[[], Check]) -> Check:
    """Run one check; an error is that check's failure, never the end of the report."""
    try:
        return fn()
    except FacegateError as exc:
        return Check(name, FAIL, " ".join(str(exc).split()))
    except Exception as exc:  # doctor reports, it never crashes
        log.debug("check %s raised", name, exc_info=True)
        return Check(name, FAIL, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
