"""Turn a trained facegate network into ONNX and TFLite model bundles (extra ``export``)."""
