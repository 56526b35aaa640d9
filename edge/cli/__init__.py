"""The ``facegate`` command: :mod:`.main` (gallery and tools), :mod:`.door` (run, demo, config, doctor)."""

from .main import EXIT_ERROR, EXIT_OK, EXIT_REJECT, build_parser, main

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_REJECT", "build_parser", "main"]
