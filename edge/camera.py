"""Frame sources: the Pi camera, OpenCV captures and replays, behind one protocol.

Every source turns whatever it reads into a :class:`~facegate.edge.types.Frame`
(BGR uint8, monotonic timestamp, increasing index) so nothing downstream knows
where frames come from. :class:`LatestFrameGrabber` runs a source on its own
thread and keeps only the newest frame: the recogniser is slower than the
camera, and a queue would make the door answer to a face that has already
walked away. It also rides out camera loss (a USB cable, an RTSP hiccup) by
reconnecting with a backoff instead of killing the daemon.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .errors import BackendUnavailable, CameraError, CameraUnavailable, ImageError
from .imageio import load_image, to_bgr
from .types import Frame

if TYPE_CHECKING:
    from .config import CameraConfig

__all__ = [
    "IMAGE_SUFFIXES",
    "FrameSource",
    "LatestFrameGrabber",
    "OpenCVSource",
    "Picamera2Source",
    "ReplaySource",
    "create_source",
]

log = logging.getLogger(__name__)

#: File suffixes a replay folder is scanned for (case-insensitive).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp"})

PICAMERA2_HINT = (
    "picamera2 is not installed in this Python environment: install it with "
    "`sudo apt install python3-picamera2` (it is not usable from PyPI) and create "
    "the virtualenv with `python3 -m venv --system-site-packages` so it can see it"
)


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
        return self._stamp(image)

    def _stamp(self, image: np.ndarray) -> Frame:
        self._index += 1
        return Frame(image=image, timestamp=time.monotonic(), index=self._index, source=self.name)

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

    def _read(self) -> np.ndarray | None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


# --- Raspberry Pi camera -----------------------------------------------------
class Picamera2Source(_BaseSource):
    """The Pi camera module through picamera2 (libcamera).

    picamera2 is only installable from Raspberry Pi OS's apt repository, so it
    is imported inside :meth:`open`: importing this module never needs it.
    """

    def __init__(self, size: tuple[int, int] = (640, 480), fps: float | None = None, camera_num: int = 0,
                 buffer_count: int = 4, name: str | None = None) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.fps = fps
        self.camera_num = camera_num
        self.buffer_count = buffer_count
        self.name = name or f"picamera2:{camera_num}"
        self._cam: Any = None

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise BackendUnavailable(PICAMERA2_HINT) from exc
        try:
            cam = Picamera2(self.camera_num)
        except Exception as exc:  # IndexError/RuntimeError when no camera is attached
            raise CameraUnavailable(f"{self.name}: cannot open the camera: {exc}") from exc
        try:
            # libcamera names packed formats by their little-endian word, so
            # "RGB888" is stored B, G, R in memory: capture_array() already
            # gives the BGR order OpenCV and the rest of facegate expect (the
            # picamera2 manual, appendix on pixel formats). No conversion here.
            controls = {"FrameRate": float(self.fps)} if self.fps else {}
            config = cam.create_video_configuration(
                main={"size": self.size, "format": "RGB888"},
                controls=controls,
                buffer_count=self.buffer_count,
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:
            try:
                cam.close()
            except Exception:
                pass
            raise CameraUnavailable(f"{self.name}: cannot start the camera: {exc}") from exc
        self._cam = cam
        log.info("%s: started at %dx%d", self.name, *self.size)

    def _read(self) -> np.ndarray:
        try:
            array = self._cam.capture_array("main")
        except Exception as exc:
            raise CameraError(f"{self.name}: capture failed: {exc}") from exc
        # Strides may be padded; to_bgr makes it contiguous and drops an X channel.
        return to_bgr(array)

    def _close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()


# --- OpenCV: webcams, files, network streams ---------------------------------
def _is_live(target: int | str) -> bool:
    if isinstance(target, int):
        return True
    return "://" in target or target.startswith("/dev/")


class OpenCVSource(_BaseSource):
    """``cv2.VideoCapture`` on a device index, device path, file or RTSP/HTTP URL.

    A live source that stops delivering raises :class:`CameraError` (so the
    grabber reconnects); a file returns None at its end.
    """

    def __init__(self, target: int | str, size: tuple[int, int] | None = None, fps: float | None = None,
                 api_preference: int | None = None, name: str | None = None) -> None:
        super().__init__()
        if isinstance(target, str) and target.strip().isdigit():
            target = int(target)
        self.target: int | str = target
        self.size = size
        self.fps = fps
        self.api_preference = api_preference
        self.live = _is_live(target)
        self.name = name or f"opencv:{target}"
        self._cap: Any = None

    def _open(self) -> None:
        import cv2

        if not self.live and not Path(str(self.target)).exists():
            raise CameraUnavailable(f"{self.name}: no such file: {self.target}")
        cap = cv2.VideoCapture(self.target) if self.api_preference is None else cv2.VideoCapture(
            self.target, self.api_preference)
        if not cap.isOpened():
            cap.release()
            raise CameraUnavailable(f"{self.name}: cannot open {self.target!r}")
        if self.live:
            # Keep the driver's queue short: old frames are worthless to a door.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self.size:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        self._cap = cap
        log.info("%s: opened (%dx%d)", self.name, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                 int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def _read(self) -> np.ndarray | None:
        try:
            ok, image = self._cap.read()
        except Exception as exc:  # cv2.error from a broken backend
            raise CameraError(f"{self.name}: read failed: {exc}") from exc
        if not ok or image is None:
            if self.live:
                raise CameraError(f"{self.name}: no frame from {self.target!r} (disconnected?)")
            return None  # end of file
        return to_bgr(image)

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


# --- replay: folders, video files, arrays --------------------------------------
class ReplaySource(_BaseSource):
    """Replays a folder of images, a video file or a list of arrays.

    For tests, benchmarks and the demo: deterministic input through the same
    code path as a camera. With ``fps`` the frames are paced to that rate
    (monotonic clock, no drift accumulation), as a camera would deliver them.
    """

    def __init__(self, path: str | Path | Sequence[np.ndarray], fps: float | None = None, loop: bool = False,
                 name: str | None = None) -> None:
        super().__init__()
        if fps is not None and fps <= 0:
            raise ValueError("fps must be positive")
        self.fps = fps
        self.loop = loop
        self._arrays: list[np.ndarray] | None = None
        self._path: Path | None = None
        if isinstance(path, (str, Path)):
            self._path = Path(path)
            self.name = name or f"replay:{self._path}"
        else:
            self._arrays = list(path)
            self.name = name or f"replay:<{len(self._arrays)} arrays>"
        self._files: list[Path] = []
        self._video: OpenCVSource | None = None
        self._pos = 0
        self._next_due: float | None = None

    def _open(self) -> None:
        self._pos = 0
        self._next_due = None
        if self._arrays is not None:
            return
        assert self._path is not None
        if self._path.is_dir():
            self._files = sorted(p for p in self._path.iterdir()
                                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise CameraUnavailable(f"{self.name}: no image files in {self._path}")
        elif self._path.is_file():
            self._video = OpenCVSource(str(self._path), name=self.name)
            self._video.open()
        else:
            raise CameraUnavailable(f"{self.name}: no such file or folder: {self._path}")

    def _close(self) -> None:
        video, self._video = self._video, None
        if video is not None:
            video.close()

    def _read(self) -> np.ndarray | None:
        image = self._next_image()
        if image is not None:
            self._pace()
        return image

    def _next_image(self) -> np.ndarray | None:
        if self._video is not None:
            frame = self._video.read()
            if frame is None and self.loop and self._pos > 0:
                self._video.close()
                self._video.open()
                self._pos = 0
                frame = self._video.read()
            if frame is None:
                return None
            self._pos += 1
            return frame.image
        if self._arrays is not None:
            if not self._arrays:
                return None
            if self._pos >= len(self._arrays):
                if not self.loop:
                    return None
                self._pos = 0
            image = self._arrays[self._pos]
            self._pos += 1
            return to_bgr(image)
        # A folder: skip (and forget) unreadable files, so a loop logs each once.
        while self._files:
            if self._pos >= len(self._files):
                if not self.loop:
                    return None
                self._pos = 0
            path = self._files[self._pos]
            try:
                image = load_image(path)
            except ImageError as exc:
                log.warning("%s: skipping unreadable image: %s", self.name, exc)
                del self._files[self._pos]
                continue
            self._pos += 1
            return image
        return None  # every file was unreadable

    def _pace(self) -> None:
        if not self.fps:
            return
        period = 1.0 / self.fps
        now = time.monotonic()
        if self._next_due is None or now - self._next_due > period:
            self._next_due = now  # first frame, or we fell behind: do not burst
        elif self._next_due > now:
            time.sleep(self._next_due - now)
        self._next_due += period


# --- newest-frame grabber -------------------------------------------------------
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


# --- factory -------------------------------------------------------------------
def create_source(cfg: CameraConfig) -> FrameSource:
    """Build the frame source a ``[camera]`` config table describes."""
    size = (cfg.width, cfg.height)
    if cfg.type == "picamera2":
        return Picamera2Source(size=size, fps=cfg.fps)
    if cfg.type == "opencv":
        return OpenCVSource(cfg.device, size=size, fps=cfg.fps)
    if cfg.type == "replay":
        if cfg.path is None:
            raise CameraUnavailable('camera.type = "replay" needs camera.path')
        return ReplaySource(cfg.path, fps=cfg.fps, loop=cfg.loop)
    raise CameraError(f"unknown camera.type {cfg.type!r}; expected picamera2, opencv or replay")
