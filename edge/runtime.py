"""onnxruntime sessions as the device runs them: one place for the options.

Kept apart from what each model means (detector, embedder), so every ONNX
model on the device gets the same threading behaviour.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

from .errors import BackendUnavailable, ModelError

log = logging.getLogger(__name__)

_X86 = {"x86_64", "amd64", "i386", "i686"}


def _numpy_cpu_features() -> dict[str, bool]:
    """numpy's own CPUID reading (the running CPU, also under an emulator); empty where it is not exposed."""
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            return dict(__import__(module, fromlist=["__cpu_features__"]).__cpu_features__)
        except (ImportError, AttributeError):
            continue
    return {}


@functools.lru_cache(maxsize=1)
def int8_needs_wide_accumulation() -> bool:
    """True on an x86 CPU without AVX512-VNNI, where onnxruntime's u8 x s8 kernels saturate.

    There MLAS multiplies with VPMADDUBSW, which adds pairs of uint8 x int8
    products into a *saturating* int16: with full-range weights and uint8
    activations a sum overflows, and the shipped INT8 embedder's output fell to
    a cosine of 0.82 to the same model elsewhere (facegate-irn, measured under
    ``qemu-x86_64 -cpu Haswell``). ``session.x64quantprecision`` makes
    onnxruntime widen to int16 first: exact, about twice as slow. VNNI CPUs
    (VPDPBUSD accumulates in int32) and ARM are not affected and keep the fast
    path. A CPU with only AVX-VNNI (no AVX-512) is not told apart by numpy and
    takes the exact path too: slower, never wrong.
    """
    if platform.machine().lower() not in _X86:
        return False
    features = _numpy_cpu_features()
    wide = not features.get("AVX512VNNI", False)
    if wide:
        log.info("x86 CPU without AVX512-VNNI: INT8 models run with onnxruntime's exact (x64quantprecision) kernels")
    return wide


def ort_session(path: str | Path, threads: int = 1):
    """A CPU InferenceSession with ``threads`` intra-op threads.

    Spinning is off: a stage's idle worker threads would otherwise busy-wait
    and steal the core from the next stage (OpenCV, dlib), which made two
    threads slower than one for a whole frame on this 2-core machine.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise BackendUnavailable("onnxruntime is missing: pip install onnxruntime") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No arena: the detector's pyramid feeds a new input shape at every level
    # and the arena kept a block per shape (about 30 MB of the daemon's peak);
    # plain malloc returns them, at no measurable cost in speed.
    opts.enable_cpu_mem_arena = False
    if int8_needs_wide_accumulation():
        opts.add_session_config_entry("session.x64quantprecision", "1")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: onnxruntime cannot load it ({exc})") from None
