"""onnxruntime sessions as the device runs them: one place for the options.

Kept apart from what each model means (detector, embedder), so every ONNX
model on the device gets the same threading behaviour.
"""

from __future__ import annotations

from pathlib import Path

from .errors import BackendUnavailable, ModelError


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
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: onnxruntime cannot load it ({exc})") from None
