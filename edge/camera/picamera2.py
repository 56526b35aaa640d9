"""The Pi camera module through picamera2 (libcamera), main and lores streams."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailable, CameraError, CameraUnavailable
from ..imageio import to_bgr
from .base import _BaseSource

log = logging.getLogger(__name__)

PICAMERA2_HINT = (
    "picamera2 is not installed in this Python environment: install it with "
    "`sudo apt install python3-picamera2` (it is not usable from PyPI) and create "
    "the virtualenv with `python3 -m venv --system-site-packages` so it can see it"
)

#: where Debian and Raspberry Pi OS keep apt's Python packages
SYSTEM_SITE = "/usr/lib/python3/dist-packages"

#: what an extension built against one numpy says when it meets another
_NUMPY_ABI_SIGNS = ("numpy.dtype size changed", "numpy.core.multiarray failed to import",
                    "_ARRAY_API not found", "compiled using NumPy 1.x cannot be run",
                    "numpy.core._multiarray_umath failed to import", "binary incompatibility")


def _loaded_numpy() -> str:
    """Which numpy this process imported: version and folder (the venv's or apt's)."""
    try:
        import numpy
    except Exception as exc:  # noqa: BLE001 - only used to explain another failure
        return f"numpy itself fails to import ({exc})"
    return f"numpy {numpy.__version__} from {Path(numpy.__file__).parent.parent}"


def picamera2_import_hint(exc: BaseException) -> str:
    """One line that says why ``import picamera2`` failed and what to do about it.

    picamera2 and its compiled helpers (simplejpeg, libcamera's bindings) come
    from apt, built against apt's numpy; the usual failure on a Pi is a newer
    numpy that pip put into the venv in front of it ("numpy.dtype size changed").
    """
    text = f"{type(exc).__name__}: {exc}".strip()
    chain = " ".join(f"{type(e).__name__}: {e}" for e in _exception_chain(exc))
    if isinstance(exc, ModuleNotFoundError) and exc.name == "picamera2":
        return PICAMERA2_HINT
    if any(sign in chain for sign in _NUMPY_ABI_SIGNS):
        numpy_here = _loaded_numpy()
        shadowed = SYSTEM_SITE not in numpy_here
        venv, release = sys.prefix, _os_release()
        fix = (f"remove the venv's own numpy so apt's is used again: `{venv}/bin/pip uninstall numpy`, then "
               f"reinstall with `{venv}/bin/pip install -c constraints/{release}.txt '.[pi]'` from the source "
               "folder (README, Install on a Raspberry Pi)") if shadowed else (
               "apt's packages disagree with each other: `sudo apt update && sudo apt full-upgrade`")
        return (f"picamera2 cannot be imported: it was built against apt's numpy, but this process runs "
                f"{numpy_here} ({text.splitlines()[0]}); {fix}")
    if isinstance(exc, ImportError):
        return (f"picamera2 is installed but one of its parts cannot be imported ({text.splitlines()[0]}): "
                "`sudo apt install --reinstall python3-picamera2 python3-libcamera`, and make sure the venv was "
                "created with --system-site-packages")
    return (f"picamera2 fails while importing ({text.splitlines()[0]}): check "
            "`/usr/bin/python3 -c 'import picamera2'` outside the venv; if that fails too, "
            "`sudo apt install --reinstall python3-picamera2`")


def _os_release() -> str:
    """The Debian codename a constraints file is named after (``bookworm``, ``trixie``), else ``RELEASE``."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "RELEASE"
    for line in text.splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.partition("=")[2].strip().strip('"') or "RELEASE"
    return "RELEASE"


def _exception_chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def import_picamera2() -> Any:
    """The ``Picamera2`` class, or :class:`BackendUnavailable` with one line that says what to do.

    Any exception counts: a numpy ABI mismatch raises ValueError or
    AttributeError from inside picamera2's imports, not ImportError.
    """
    try:
        from picamera2 import Picamera2  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - every import failure gets the same clear message
        raise BackendUnavailable(picamera2_import_hint(exc)) from exc
    return Picamera2


def lores_to_bgr(yuv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BGR of a YUV420 (I420) lores buffer: (h * 3 / 2, stride) bytes, rows maybe padded."""
    import cv2

    w, h = size
    return cv2.cvtColor(np.ascontiguousarray(yuv[: h * 3 // 2, :w]), cv2.COLOR_YUV2BGR_I420)


class Picamera2Source(_BaseSource):
    """The Pi camera module through picamera2 (libcamera).

    picamera2 is only installable from Raspberry Pi OS's apt repository, so it
    is imported inside :meth:`open`: importing this module never needs it.

    With ``lores_size`` the ISP also scales each frame down into a second,
    "lores" stream (YUV420, the only format the Pi's lores stream has): the
    detector runs on it, the crop is cut from ``main`` (picamera2's
    ``opencv_face_detect_2`` example), and no CPU time goes into shrinking.
    """

    def __init__(self, size: tuple[int, int] = (640, 480), fps: float | None = None, camera_num: int = 0,
                 buffer_count: int = 4, name: str | None = None,
                 lores_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        # YUV420 needs even dimensions; the ISP cannot scale up.
        self.lores_size = None if lores_size is None else (int(lores_size[0]) & ~1, int(lores_size[1]) & ~1)
        if self.lores_size is not None and (self.lores_size[0] > self.size[0] or self.lores_size[1] > self.size[1]):
            raise CameraError(f"lores size {self.lores_size} must not exceed the main size {self.size}")
        self.fps = fps
        self.camera_num = camera_num
        self.buffer_count = buffer_count
        self.name = name or f"picamera2:{camera_num}"
        self._cam: Any = None

    def _open(self) -> None:
        Picamera2 = import_picamera2()
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
            streams = {"main": {"size": self.size, "format": "RGB888"}}
            if self.lores_size is not None:
                streams["lores"] = {"size": self.lores_size, "format": "YUV420"}
            config = cam.create_video_configuration(
                **streams,
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

    def _read(self) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        try:
            if self.lores_size is None:
                array = self._cam.capture_array("main")
            else:  # one request, both streams: the two images show the same instant
                (array, yuv), _ = self._cam.capture_arrays(["main", "lores"])
        except Exception as exc:
            raise CameraError(f"{self.name}: capture failed: {exc}") from exc
        # Strides may be padded; to_bgr makes it contiguous and drops an X channel.
        if self.lores_size is None:
            return to_bgr(array)
        return to_bgr(array), lores_to_bgr(yuv, self.lores_size)

    def _close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()
