"""Read a network to export from whatever the training side saved.

:func:`load_checkpoint` accepts, by content rather than by file name:

1. **A training checkpoint** of ``facegate train run`` (``checkpoint.pt``, or
   its run folder)::

       {"format": 1,
        "net_config": {...NetConfig fields; stages as dicts or [e, c, r, s] lists...},
        "model": {"net": <FaceEmbeddingNet state_dict>,
                  "heads": {"binary_head.linear.weight": ..., "binary_head.linear.bias": ..., ...}},
        "config": {...the TrainConfig as a dict; "bundle_version" and "cache" are used...},
        "state": {"step": ..., "epoch": ..., "seconds": ...},
        "eval": {...facegate.edge.evaluate.lfw_half_report figures...}}

   ``"model"`` may also be a plain state_dict, and the binary head may come
   as ``"binary_head"``: a :class:`facegate.models.network.BinaryHead`
   state_dict or ``{"weights": [...], "bias": b, "threshold": t}``.
   ``"evaluation"`` / ``"report"`` are accepted for ``"eval"``, and an explicit
   ``"thresholds": {"default": ..., "by_fmr": {...}}`` wins over the report.
2. **A weights file** that ``facegate train run`` (``export = true``) writes
   next to its checkpoint (``facegate-mfn.pt``, ``facegate-mfn.folded.pt``):
   ``{"net_config": {...}, "state_dict": {...}, "folded": bool, "step": n}``.
3. **A plain state_dict** of :class:`FaceEmbeddingNet` (keys may carry a
   ``module.`` or ``net.`` prefix), with its :class:`NetConfig` from the
   ``net_config`` argument, a ``net_config.json`` / ``<name>.json`` next to the
   file, or the default NetConfig. BatchNorm-folded state_dicts are recognised.

Thresholds come from the figures of :func:`facegate.edge.evaluate.lfw_half_report`
(``threshold_far_1e-3``, ``threshold_far_1e-4``); the door's default is the
FMR 1e-4 one. :func:`manifest_evaluation` turns a report (and what a
training checkpoint says of its run) into a manifest's ``evaluation``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from facegate.edge.embed.base import Thresholds
from facegate.edge.embed.bundle import BinaryHead as ManifestHead
from facegate.models.checkpoint import build_net, is_folded
from facegate.models.network import FaceEmbeddingNet, NetConfig, net_config_from_dict
from facegate.models.recipe import TrainError

from . import ExportError

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
DEFAULT_FMR = "1e-4"
_PREFIXES = ("module.", "net.", "_orig_mod.")


#: LFW-half figures copied from an evaluation report into the manifests' ``evaluation``.
REPORT_KEYS = ("protocol", "detector", "pairs", "accuracy_mean", "accuracy_std", "auc", "eer", "tar_at_far_1e-3",
               "tar_at_far_1e-4", "threshold_far_1e-3", "threshold_far_1e-4", "impostor_pairs", "genuine_pairs_all",
               "images", "failures_to_acquire", "head_accuracy_at_0.5", "head_accuracy_mean", "head_accuracy_std")
#: Training-config keys summarised in a manifest's ``evaluation.training``.
LOSS_KEYS = ("triplet", "distill_dlib", "distill_facenet", "binary_head")


def _net_config(d: Mapping[str, Any], where: str = "net_config") -> NetConfig:
    """:func:`facegate.models.network.net_config_from_dict`, its ValueError as ExportError."""
    try:
        return net_config_from_dict(d)
    except ValueError as exc:
        raise ExportError(f"{where}: {exc}") from None


def thresholds_from_report(report: Mapping[str, Any] | None, default_fmr: str = DEFAULT_FMR,
                           source: str = "") -> Thresholds | None:
    """Thresholds from an LFW-half report (``threshold_far_<fmr>`` keys), or None if it has none."""
    if not report:
        return None
    if "default" in report and not any(k.startswith("threshold_far_") for k in report):
        by = report.get("by_fmr", {})  # already in manifest form
        return Thresholds(float(report["default"]), {str(k): float(v) for k, v in by.items()},
                          str(report.get("source", source)))
    by_fmr = {k[len("threshold_far_"):]: float(v) for k, v in report.items()
              if k.startswith("threshold_far_") and v is not None}
    if not by_fmr:
        return None
    if default_fmr not in by_fmr:
        raise ExportError(f"the evaluation has thresholds at FMR {', '.join(sorted(by_fmr))}, not {default_fmr}")
    where = source or f"{report.get('protocol', 'lfw-half')}, {int(report.get('impostor_pairs', 0)):,} impostor pairs"
    return Thresholds(by_fmr[default_fmr], by_fmr, f"{where}; default at FMR {default_fmr}")


def manifest_evaluation(report: Mapping[str, Any] | None,
                        extras: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A manifest's ``evaluation``: the :data:`REPORT_KEYS` figures of ``report`` and, from
    :func:`load_checkpoint`'s ``extras``, the training step and the ``training`` summary."""
    report, extras = report or {}, extras or {}
    evaluation = {k: report[k] for k in REPORT_KEYS if k in report}
    if extras.get("step") is not None:
        evaluation["training_step"] = extras["step"]
    if extras.get("training"):
        evaluation["training"] = dict(extras["training"])
    return evaluation


def _strip(state: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in state.items():
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _build(cfg: NetConfig, state: Mapping[str, Any], folded: bool | None, where: str) -> FaceEmbeddingNet:
    state = _strip(state)
    try:
        return build_net(cfg, state, is_folded(state) if folded is None else folded)
    except TrainError as exc:
        raise ExportError(f"{where}: {exc}; pass the right net config") from None


def _binary_head(obj: Any) -> ManifestHead | None:
    if obj is None:
        return None
    if isinstance(obj, ManifestHead):
        return obj
    if isinstance(obj, Mapping) and "weights" in obj:
        return ManifestHead(tuple(float(w) for w in obj["weights"]), float(obj["bias"]),
                            float(obj.get("threshold", 0.5)))
    state = _strip({k.removeprefix("binary_head."): v for k, v in obj.items()}) if isinstance(obj, Mapping) else {}
    if "linear.weight" in state:
        w = state["linear.weight"].detach().float().reshape(-1)
        b = state["linear.bias"].detach().float().reshape(-1)
        return ManifestHead(tuple(float(x) for x in w), float(b[0]), 0.5)
    raise ExportError("binary_head: neither a BinaryHead state_dict nor {weights, bias}")


LADDER_FORMAT = "facegate-irn-ladder-1"


def _ladder(obj: Mapping[str, Any], path: Path, default_fmr: str) -> tuple[Any, dict[str, Any]]:
    """A rung of the Inception-ResNet ladder (:mod:`facegate.models.ladder`): its network, last figures, crop."""
    from facegate.models.irn import InceptionResNetV1, IRNConfig

    try:
        cfg = IRNConfig.from_dict(obj["irn"])
        net = InceptionResNetV1(cfg)
        net.load_state_dict(obj["state"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ExportError(f"{path}: not a usable ladder checkpoint ({str(exc).splitlines()[0]})") from None
    net.crop = dict(obj.get("crop") or {})
    evals = list(obj.get("evals") or [])
    report = dict(evals[-1]) if evals else {}
    config = dict(obj.get("config") or {})
    step = obj.get("step")
    extras = {"kind": "ladder", "net_config": cfg, "folded": True, "binary_head": _binary_head(obj.get("head")),
              "evaluation": report, "config": config, "step": step, "version": str(step), "path": str(path),
              "training": {"steps": step, "seconds": round(float(obj.get("seconds", 0.0)), 1),
                           "recipe": {k: config.get(k) for k in ("repeats", "input_size", "init_from", "lr",
                                                                 "distill", "triplet", "binary_head")}},
              "thresholds": thresholds_from_report(report, default_fmr, source=(
                  f"facegate train ladder (lfw-half, step {step})")) if report else None}
    log.info("%s: ladder checkpoint, %s, step %s", path, cfg, step)
    return net.eval(), extras


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: unreadable JSON ({exc})") from None


def load_checkpoint(path: str | Path, net_config: NetConfig | Mapping[str, Any] | str | Path | None = None,
                    default_fmr: str = DEFAULT_FMR) -> tuple[FaceEmbeddingNet, dict[str, Any]]:
    """The network (eval mode, on CPU) and what else the file says, for export.

    ``extras`` keys (each present, None / empty when unknown):
    ``kind`` ("training" | "weights" | "state_dict"), ``net_config`` (NetConfig),
    ``folded`` (bool: the network is already BatchNorm-folded), ``binary_head``
    (a manifest BinaryHead), ``evaluation`` (the report dict), ``thresholds``
    (Thresholds from the report at ``default_fmr``), ``config`` (training
    config dict), ``step``, ``version`` (the recipe's bundle_version), ``path``,
    ``training`` (of a training checkpoint: steps, epochs, seconds, miner and
    loss weights of the run, for :func:`manifest_evaluation`).
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise ExportError(f"{path}: no checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle / zip / runtime errors alike
        raise ExportError(f"{path}: not a torch checkpoint ({exc})") from None

    if isinstance(obj, Mapping) and obj.get("format") == LADDER_FORMAT:
        return _ladder(obj, path, default_fmr)
    cfg_arg: NetConfig | None = None
    if isinstance(net_config, NetConfig):
        cfg_arg = net_config
    elif isinstance(net_config, (str, Path)):
        cfg_arg = _net_config(_read_json(Path(net_config)), str(net_config))
    elif net_config is not None:
        cfg_arg = _net_config(net_config)

    extras: dict[str, Any] = {"kind": None, "net_config": None, "folded": False, "binary_head": None,
                              "evaluation": {}, "thresholds": None, "config": {}, "step": None, "version": None,
                              "path": str(path), "training": None}
    if _is_state_dict(obj):
        extras["kind"] = "state_dict"
        cfg = cfg_arg
        if cfg is None:
            for side in (path.with_suffix(".json"), path.parent / "net_config.json"):
                if side.is_file():
                    cfg = _net_config(_read_json(side), str(side))
                    break
        cfg = cfg or NetConfig()
        state, folded = obj, None
    elif isinstance(obj, Mapping):
        raw_cfg = obj.get("net_config")
        cfg = cfg_arg or (_net_config(raw_cfg, f"{path}: net_config") if raw_cfg is not None else NetConfig())
        model = obj.get("model", obj.get("state_dict"))
        heads: Mapping[str, Any] = {}
        if isinstance(model, Mapping) and "net" in model and _is_state_dict(model["net"]):
            state, heads = model["net"], model.get("heads") or {}
        elif _is_state_dict(model):
            state = model
        else:
            raise ExportError(f"{path}: no network weights (expected 'model' or 'state_dict'; "
                              f"keys: {', '.join(map(str, obj))})")
        extras["kind"] = "training" if "model" in obj else "weights"
        folded = obj.get("folded")
        head_obj = obj.get("binary_head")
        if head_obj is None and any(k.startswith("binary_head.") for k in heads):
            head_obj = {k: v for k, v in heads.items() if k.startswith("binary_head.")}
        extras["binary_head"] = _binary_head(head_obj)
        report = obj.get("eval") or obj.get("evaluation") or obj.get("report") or {}
        extras["evaluation"] = dict(report)
        config = obj.get("config") or {}
        extras["config"] = dict(config) if isinstance(config, Mapping) else {}
        state_info = obj.get("state") or {}
        extras["step"] = obj.get("step", state_info.get("step") if isinstance(state_info, Mapping) else None)
        extras["version"] = extras["config"].get("bundle_version")
        if extras["kind"] == "training" and isinstance(state_info, Mapping) and state_info:
            c = extras["config"]
            extras["training"] = {"steps": extras["step"], "epochs": state_info.get("epoch"),
                                  "seconds": round(float(state_info.get("seconds", 0.0)), 1),
                                  "miner": c.get("miner"), "losses": {k: c.get(k) for k in LOSS_KEYS}}
        explicit = obj.get("thresholds")
        step = f", step {extras['step']}" if extras["step"] is not None else ""
        extras["thresholds"] = (thresholds_from_report(explicit, default_fmr) if explicit else
                                thresholds_from_report(report, default_fmr, source=(
                                    f"facegate train ({report.get('protocol', 'lfw-half')}, "
                                    f"{int(report.get('impostor_pairs', 0)):,} impostor pairs{step})")
                                    if report else ""))
    else:
        raise ExportError(f"{path}: neither a state_dict nor a checkpoint dict ({type(obj).__name__})")
    net = _build(cfg, state, folded, str(path))
    extras["net_config"] = cfg
    extras["folded"] = not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    if extras["binary_head"] is not None and len(extras["binary_head"].weights) != cfg.embedding_dim:
        raise ExportError(f"{path}: binary head has {len(extras['binary_head'].weights)} weights "
                          f"for {cfg.embedding_dim}-d embeddings")
    log.info("%s: %s checkpoint, %s", path, extras["kind"], cfg)
    return net, extras
