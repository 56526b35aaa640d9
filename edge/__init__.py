"""facegate's device runtime: everything the door needs, and never torch.

Stages, each a small module with a protocol and real implementations:
``camera`` (frame sources) -> ``detect`` (MTCNN, 5 landmarks) -> ``align``
(5-point template, quality gate) -> ``embed`` (ONNX / TFLite bundles,
FaceNet, dlib) -> ``gallery`` (SQLite templates, 1:1 and 1:K) -> ``policy``
(k-of-n decisions) -> ``lock`` (gpiozero relay). ``daemon`` runs them;
``cli`` is the ``facegate`` command. Submodules import their heavy
dependencies only when used, so importing this package is cheap.
"""
