"""Argument types shared by the subcommands: one wording for one kind of mistake."""

from __future__ import annotations

import argparse
from typing import Callable


def whole_number(lo: int, hi: int | None = None, expected: str | None = None) -> Callable[[str], int]:
    """An ``argparse`` type: a whole number in ``lo .. hi``; ``expected`` words the range in the refusal."""
    wording = expected or (f"{lo} to {hi}" if hi is not None else f"a number >= {lo}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected {wording}, got {value}")
        return value

    return parse


#: ``--threads``, ``--workers``, ``--limit`` and the like.
positive_int = whole_number(1)
