"""The frame-source protocol and the lifecycle every source shares.

Every source turns whatever it reads into a :class:`~facegate.edge.types.Frame`
(BGR uint8, monotonic timestamp, increasing index) so nothing downstream knows
where frames come from.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import CameraError
from ..types import Frame

log = logging.getLogger(__name__)

@runtime_checkable
class FrameSource(Protocol):
    """Something that yields frames: open, read until None, close.

    ``read()`` returns None only at the end of a finite source (a file or a
    replay without loop); a live source that fails raises :class:`CameraError`.
    ``close()`` is idempotent and a closed source may be opened again, which
    is how :class:`LatestFrameGrabber` reconnects.
    """

    name: str

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> FrameSource: ...

    def __exit__(self, *exc: object) -> None: ...


class _BaseSource:
    """Shared lifecycle: context manager, open/closed state, frame stamping."""

    name: str = "source"
    #: True for a source that ends (a file, a replay without loop): the daemon stops when it does.
    finite: bool = False

    def __init__(self) -> None:
        self._is_open = False
        self._index = 0  # never reset, so indices stay increasing across reopen

    @property
    def closed(self) -> bool:
        return not self._is_open

    def open(self) -> None:
        if self._is_open:
            return
        self._open()
        self._is_open = True

    def close(self) -> None:
        if not self._is_open:
            return
        self._is_open = False
        try:
            self._close()
        except Exception:  # closing must never mask the error that led here
            log.warning("%s: error while closing", self.name, exc_info=True)

    def read(self) -> Frame | None:
        if not self._is_open:
            raise CameraError(f"{self.name}: read() on a source that is not open")
        image = self._read()
        if image is None:
            return None
        if isinstance(image, tuple):  # (main, lores): a camera that also delivers a small stream
            return self._stamp(*image)
        return self._stamp(image)

    def _stamp(self, image: np.ndarray, lores: np.ndarray | None = None) -> Frame:
        self._index += 1
        return Frame(image=image, timestamp=time.monotonic(), index=self._index, source=self.name, lores=lores)

    def __enter__(self) -> _BaseSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # last resort only; callers should close()
        try:
            if getattr(self, "_is_open", False):
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {'open' if self._is_open else 'closed'}>"

    # subclasses implement these three
    def _open(self) -> None:
        raise NotImplementedError

    def _read(self) -> np.ndarray | tuple[np.ndarray, np.ndarray] | None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError
