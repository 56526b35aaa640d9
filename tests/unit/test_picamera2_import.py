"""Whatever goes wrong while importing picamera2, the camera says so in one line with the fix.

A stand-in ``picamera2`` package on ``sys.path`` fails the way the real one
does on a Pi (a missing module, a venv numpy that shadows apt's, a missing
libcamera library, anything else).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from facegate.edge.camera import Picamera2Source
from facegate.edge.errors import BackendUnavailable

pytestmark = pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None,
                                reason="the real picamera2 is installed here")

#: what picamera2's import raises on Raspberry Pi OS bookworm when pip put numpy 2 into the venv
DTYPE_SIZE = ("numpy.dtype size changed, may indicate binary incompatibility. "
              "Expected 96 from C header, got 88 from PyObject")


def _broken_picamera2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    importlib.invalidate_caches()


def _open_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    _broken_picamera2(tmp_path, monkeypatch, body)
    with pytest.raises(BackendUnavailable) as info:
        Picamera2Source().open()
    assert isinstance(info.value, ImportError)  # callers may catch the builtin kind
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_numpy_abi_mismatch_names_the_numpy_in_use_and_the_fix(tmp_path, monkeypatch) -> None:
    message = _open_error(tmp_path, monkeypatch, f"import numpy\nraise ValueError({DTYPE_SIZE!r})\n")
    import numpy

    assert f"numpy {numpy.__version__}" in message and "numpy.dtype size changed" in message
    assert "pip uninstall numpy" in message and "constraints/" in message


def test_numpy_2s_array_api_error_is_recognised_as_the_same_mismatch(tmp_path, monkeypatch) -> None:
    # an extension built against numpy 1.x, imported under numpy 2, chained through ImportError
    body = ("try:\n    raise AttributeError('_ARRAY_API not found')\n"
            "except AttributeError:\n    raise ImportError('numpy.core.multiarray failed to import')\n")
    assert "built against apt's numpy" in _open_error(tmp_path, monkeypatch, body)


def test_a_missing_library_inside_picamera2_says_reinstall(tmp_path, monkeypatch) -> None:
    body = "raise ImportError('libcamera.so.0.3: cannot open shared object file: No such file or directory')\n"
    message = _open_error(tmp_path, monkeypatch, body)
    assert "libcamera.so.0.3" in message and "apt install --reinstall python3-picamera2" in message
    assert "--system-site-packages" in message


def test_any_other_exception_at_import_still_gets_one_clear_line(tmp_path, monkeypatch) -> None:
    message = _open_error(tmp_path, monkeypatch, "raise RuntimeError('Could not open any dmaHeap device')\n")
    assert "RuntimeError: Could not open any dmaHeap device" in message
    assert "/usr/bin/python3 -c 'import picamera2'" in message


def test_a_missing_picamera2_says_how_to_install(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    with pytest.raises(BackendUnavailable, match="apt install python3-picamera2"):
        Picamera2Source().open()
