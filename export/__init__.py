"""Turn a trained facegate network into ONNX and TFLite model bundles.

Extras: ``export`` (torch, onnx, onnxscript: ONNX fp32 and INT8) and
``tflite-export`` (litert-torch: TFLite fp32 and INT8). Importing this package
does not import torch: the ``facegate export`` commands register without it.

- :mod:`.checkpoint`  ``load_checkpoint(path) -> (net, extras)``
- :mod:`.onnx`        ``export_onnx``, ``quantize_onnx_int8``
- :mod:`.tflite`      ``export_tflite``, ``export_tflite_int8``
- :mod:`.parity`      ``parity(net, embedder, crops)``: cosine to the PyTorch embedding
- :mod:`.crops`       calibration / parity crops from a prepared cache or an eval set
- :mod:`.bundles`     ``export_onnx_bundles``, ``export_tflite_bundles``: fp32 + INT8 bundles
- :mod:`.run`         ``export_run``: the end of a training run (entry point ``facegate.exporters``)
- :mod:`.cli`         ``facegate export onnx|tflite``
"""

from __future__ import annotations

from facegate.edge.errors import FacegateError


class ExportError(FacegateError, RuntimeError):
    """A checkpoint cannot be exported, or the exported model disagrees with PyTorch."""


EXPORT_HINT = "pip install 'facegate[export]'"
TFLITE_EXPORT_HINT = "pip install 'facegate[tflite-export]'"

__all__ = ["ExportError", "EXPORT_HINT", "TFLITE_EXPORT_HINT"]
