"""Model bundles: a folder with one model file and ``manifest.json``.

The manifest says everything the device needs to use the model without
guessing: the file's sha256 (checked on load), the crop and preprocessing,
the embedding size, the thresholds with the FMR each was measured at, an
optional binary-classification head, and the figures the bundle shipped with.
:class:`BundleEmbedder` is the one embedder for every bundle; the runtime
behind it (onnxruntime, LiteRT) is a small runner picked by ``format``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_write_text
from ..errors import BundleError, ChecksumError, ConfigError
from ..types import ALIGN_112, CropSpec, FaceCrop
from .base import EmbedderBase, Thresholds, make_model_id, sha256_file

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMATS = ("onnx", "tflite")


@dataclass(frozen=True)
class InputSpec:
    """How to turn a face crop (BGR uint8) into the model's input tensor.

    ``crop`` is the crop alignment cuts for this model; absent from a
    manifest it is the classic align5 112 px crop (every bundle before it).
    """

    size: int = 112
    colour: str = "rgb"  # "rgb" | "bgr" | "grey"
    layout: str = "nchw"  # "nchw" | "nhwc"
    mean: tuple[float, ...] = (127.5,)
    std: tuple[float, ...] = (127.5,)
    dtype: str = "float32"  # "float32" | "uint8" | "int8"
    crop: CropSpec = ALIGN_112


def parse_crop(raw: object, size: int, where: str) -> CropSpec:
    """The manifest's ``input.crop`` table (kind, size, face_scale / margin) as a checked CropSpec."""
    if raw is None:
        return CropSpec(size=size) if size != ALIGN_112.size else ALIGN_112
    if not isinstance(raw, dict):
        raise BundleError(f"{where}: input.crop must be an object, got {raw!r}")
    unknown = set(raw) - {"kind", "size", "face_scale", "margin"}
    if unknown:
        raise BundleError(f"{where}: input.crop has unknown keys {sorted(unknown)}")
    try:
        spec = CropSpec(**{"size": size, **raw})
    except ConfigError as exc:
        raise BundleError(f"{where}: input.{exc}") from None
    if spec.size != size:
        raise BundleError(f"{where}: input.crop.size {spec.size} differs from input.size {size}")
    return spec


def to_tensor(crops: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Stack BGR uint8 crops into the tensor a bundle's manifest asks for."""
    import cv2

    batch = np.stack(crops)
    if spec.colour == "rgb":
        batch = batch[..., ::-1]
    elif spec.colour == "grey":
        batch = np.stack([cv2.cvtColor(c, cv2.COLOR_BGR2GRAY) for c in crops])[..., None]
    if spec.dtype == "uint8":
        x = np.ascontiguousarray(batch, dtype=np.uint8)
    else:
        mean = np.asarray(spec.mean, dtype=np.float32)
        std = np.asarray(spec.std, dtype=np.float32)
        x = (batch.astype(np.float32) - mean) / std
    if spec.layout == "nchw":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


@dataclass(frozen=True)
class BinaryHead:
    """Logistic regression on |f(a) - f(b)|: P(same) = sigmoid(w . |d| + b)."""

    weights: tuple[float, ...]
    bias: float
    threshold: float = 0.5


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    format: str
    file: str
    sha256: str
    embedding_dim: int
    input: InputSpec = field(default_factory=InputSpec)
    metric: str = "euclidean_l2"
    thresholds: Thresholds = field(default_factory=lambda: Thresholds(default=1.0))
    binary_head: BinaryHead | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return make_model_id(self.name, self.sha256)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"


def _need(d: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise BundleError(f"{where}: missing key '{key}'")
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BundleError(f"{where}: '{key}' = {value!r} has the wrong type")
    return value


def parse_manifest(data: dict, where: str = MANIFEST) -> Manifest:
    """Validate a manifest dict; every error names the key at fault."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: not a JSON object")
    fmt = _need(data, "format", str, where)
    if fmt not in FORMATS:
        raise BundleError(f"{where}: format {fmt!r} is not one of {FORMATS}")
    sha = _need(data, "sha256", str, where)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise BundleError(f"{where}: sha256 must be 64 lower-case hex digits")
    dim = _need(data, "embedding_dim", int, where)
    if dim <= 0:
        raise BundleError(f"{where}: embedding_dim must be positive")
    raw_in = dict(data.get("input", {}))
    raw_crop = raw_in.pop("crop", None)
    try:
        spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw_in.items()})
    except TypeError as exc:
        raise BundleError(f"{where}: input: {exc}") from None
    if not isinstance(spec.size, int) or isinstance(spec.size, bool):
        raise BundleError(f"{where}: input size {spec.size!r} must be an integer")
    spec = replace(spec, crop=parse_crop(raw_crop, spec.size, where))
    if spec.colour not in ("rgb", "bgr", "grey") or spec.layout not in ("nchw", "nhwc"):
        raise BundleError(f"{where}: input colour/layout {spec.colour}/{spec.layout} not supported")
    if spec.dtype not in ("float32", "uint8", "int8") or spec.size < 16:
        raise BundleError(f"{where}: input dtype/size {spec.dtype}/{spec.size} not supported")
    raw_t = data.get("thresholds") or {}
    try:
        thresholds = Thresholds(
            default=float(raw_t["default"]),
            by_fmr={str(k): float(v) for k, v in raw_t.get("by_fmr", {}).items()},
            source=str(raw_t.get("source", "")),
        )
    except (KeyError, TypeError, ValueError):
        raise BundleError(f"{where}: thresholds must hold a numeric 'default'") from None
    head = None
    if data.get("binary_head"):
        h = data["binary_head"]
        try:
            head = BinaryHead(tuple(float(w) for w in h["weights"]), float(h["bias"]), float(h.get("threshold", 0.5)))
        except (KeyError, TypeError, ValueError):
            raise BundleError(f"{where}: binary_head needs numeric 'weights' and 'bias'") from None
        if len(head.weights) != dim:
            raise BundleError(f"{where}: binary_head has {len(head.weights)} weights for {dim}-d embeddings")
    return Manifest(
        name=_need(data, "name", str, where),
        version=str(data.get("version", "0")),
        format=fmt,
        file=_need(data, "file", str, where),
        sha256=sha,
        embedding_dim=dim,
        input=spec,
        metric=str(data.get("metric", "euclidean_l2")),
        thresholds=thresholds,
        binary_head=head,
        evaluation=dict(data.get("evaluation", {})),
    )


def load_bundle(folder: str | Path, verify: bool = True) -> tuple[Manifest, Path]:
    """Read and check a bundle; returns the manifest and the model file's path.

    ``verify`` hashes the model file: a file that does not match its manifest
    is refused, since its thresholds and gallery templates would not apply.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"{folder}: not a model bundle (no {MANIFEST})")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable manifest ({exc})") from None
    manifest = parse_manifest(data, str(path))
    model = folder / manifest.file
    if model.resolve().parent != folder.resolve():
        raise BundleError(f"{path}: model file must sit in the bundle folder")
    if not model.is_file():
        raise BundleError(f"{path}: model file {manifest.file} is missing")
    if verify:
        actual = sha256_file(model)
        if actual != manifest.sha256:
            raise ChecksumError(
                f"{model}: sha256 {actual[:12]}... does not match the manifest's {manifest.sha256[:12]}...; "
                "the file is corrupt or was replaced"
            )
    return manifest, model


def write_bundle(folder: str | Path, model_file: str | Path, **fields: Any) -> Manifest:
    """Write ``manifest.json`` for a model file already in ``folder``."""
    folder = Path(folder)
    model_file = Path(model_file)
    data = {"file": model_file.name, "sha256": sha256_file(model_file), **fields}
    for key in ("input", "thresholds", "binary_head"):
        if key in data and hasattr(data[key], "__dataclass_fields__"):
            data[key] = asdict(data[key])
    manifest = parse_manifest(data, str(folder / MANIFEST))
    atomic_write_text(folder / MANIFEST, manifest.to_json())
    return manifest


class BundleEmbedder(EmbedderBase):
    """Any of our own bundles: the checked manifest, its crop and preprocessing, and a runner.

    The runner is picked by the manifest's ``format`` from
    :data:`~.runners.RUNNERS`; a missing runtime raises
    :class:`~facegate.edge.errors.BackendUnavailable` with the install hint.
    """

    def __init__(self, bundle: str | Path, threads: int = 1, verify: bool = True) -> None:
        from .runners import RUNNERS

        manifest, model = load_bundle(bundle, verify=verify)
        self.manifest: Manifest = manifest
        self.format = manifest.format
        self.name = manifest.name
        self.model_id = manifest.model_id
        self.dim = manifest.embedding_dim
        self.thresholds = manifest.thresholds
        self.crop = manifest.input.crop
        self.model_path = model
        spec = manifest.input
        channels = 1 if spec.colour == "grey" else 3
        shape = [spec.size, spec.size, channels] if spec.layout == "nhwc" else [channels, spec.size, spec.size]
        if manifest.format == "tflite":
            # "int8": the float preprocessing, then the input tensor's quantisation; "uint8": raw pixels
            self._spec = replace(spec, dtype="float32") if spec.dtype == "int8" else spec
            self.runner = RUNNERS["tflite"](model, threads, input_shape=shape,
                                            quantise_input=spec.dtype != "uint8")
        else:
            self._spec = spec
            self.runner = RUNNERS[manifest.format](model, threads, input_shape=shape)
        log.info("loaded %s (%s, %d threads)", self.model_id, manifest.format, threads)

    def prepare(self, crop: FaceCrop) -> np.ndarray:
        """The crop as cut by alignment; it already is what the manifest asks for."""
        return crop.image

    def _forward(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        return self.runner.run(to_tensor(inputs, self._spec))

    def close(self) -> None:
        self.runner.close()
