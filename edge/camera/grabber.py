"""Keep only the newest frame: a door must answer to the face in front of it now.

:class:`LatestFrameGrabber` runs a source on its own thread: the recogniser is
slower than the camera, and a queue would make the door answer to a face that
has already walked away. It also rides out camera loss (a USB cable, an RTSP
hiccup) by reconnecting with a backoff instead of killing the daemon.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence

from ..errors import BackendUnavailable
from ..types import Frame
from .base import FrameSource

log = logging.getLogger(__name__)


class LatestFrameGrabber:
    """Reads a source on a thread and keeps only the newest frame.

    One slot, not a queue: when the consumer is slower than the camera the
    older frame is replaced (and counted in :attr:`dropped`), so latency stays
    one frame and memory stays flat. Camera loss does not stop the thread: the
    fault is logged and kept in :attr:`fault`, the source is closed and
    reopened after ``reconnect_backoff`` delays (the last one repeats).

    Frames are re-indexed here so indices strictly increase across reconnects;
    a gap between two indices the consumer sees is the frames it missed.
    Designed for one consumer.
    """

    def __init__(self, source: FrameSource, reconnect_backoff: Sequence[float] = (0.5, 1, 2, 5, 10),
                 name: str | None = None) -> None:
        if not reconnect_backoff:
            raise ValueError("reconnect_backoff needs at least one delay")
        self.source = source
        self.reconnect_backoff = tuple(float(d) for d in reconnect_backoff)
        self.name = name or f"grabber[{getattr(source, 'name', 'source')}]"
        self.fault: str | None = None  # the current camera problem, None when healthy
        self.error: BaseException | None = None  # a fatal error that ended the thread
        self.dropped = 0  # frames replaced before anyone took them
        self.frames = 0  # frames read from the source
        self.reconnects = 0  # successful opens after a fault
        self.last_frame_time: float | None = None  # monotonic time of the newest frame
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._taken = 0  # index of the last frame handed out
        self._stop = threading.Event()
        self._finished = False
        self._done = False  # the camera thread has ended, for whatever reason
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> LatestFrameGrabber:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end, wait for it, and close the source. Idempotent."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: camera thread still blocked after %.1f s", self.name, timeout)

    def __enter__(self) -> LatestFrameGrabber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """True once a finite source has ended (a file, a replay without loop)."""
        return self._finished

    # consumer side
    def get(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken; waits up to ``timeout`` seconds.

        Returns None on timeout, or at once when the grabber has stopped,
        finished or failed and has nothing new.
        """
        with self._cond:
            self._cond.wait_for(self._has_new_or_done, timeout)
            latest = self._latest
            if latest is not None and latest.index > self._taken:
                self._taken = latest.index
                return latest
            return None

    def _has_new_or_done(self) -> bool:
        latest = self._latest
        if latest is not None and latest.index > self._taken:
            return True
        return self._done or self._stop.is_set()

    # camera thread
    def _run(self) -> None:
        failures = 0
        is_open = False
        try:
            while not self._stop.is_set():
                if not is_open:
                    try:
                        self.source.open()
                        is_open = True
                        if self.fault is not None:
                            self.reconnects += 1
                            log.info("%s: camera reopened", self.name)
                    except BackendUnavailable:
                        raise  # a missing library will not come back by retrying
                    except Exception as exc:
                        failures = self._on_fault("open failed", exc, failures)
                        continue
                try:
                    frame = self.source.read()
                except Exception as exc:  # CameraError, or a driver's own error
                    is_open = False
                    self._close_source()
                    failures = self._on_fault("read failed", exc, failures)
                    continue
                if frame is None:
                    log.info("%s: source ended", self.name)
                    self._finished = True
                    break
                if self.fault is not None:
                    log.info("%s: camera recovered", self.name)
                    self.fault = None
                failures = 0
                self._publish(frame)
        except BaseException as exc:
            self.error = exc
            self.fault = f"{type(exc).__name__}: {exc}"
            log.error("%s: camera thread stopped: %s", self.name, exc)
        finally:
            self._close_source()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _on_fault(self, what: str, exc: BaseException, failures: int) -> int:
        delay = self.reconnect_backoff[min(failures, len(self.reconnect_backoff) - 1)]
        self.fault = f"{what}: {exc}"
        log.warning("%s: %s: %s; retrying in %.1f s", self.name, what, exc, delay)
        self._close_source()
        self._stop.wait(delay)
        return failures + 1

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception:
            log.warning("%s: error while closing the source", self.name, exc_info=True)

    def _publish(self, frame: Frame) -> None:
        self.frames += 1
        # Re-index here (cheap: no pixel copy) so indices increase across reconnects.
        frame = dataclasses.replace(frame, index=self.frames)
        with self._cond:
            if self._latest is not None and self._latest.index > self._taken:
                self.dropped += 1
            self._latest = frame
            self.last_frame_time = frame.timestamp
            self._cond.notify_all()
