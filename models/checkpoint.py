"""What a training run saves and reads back: its checkpoint, its RNG states and the network's weights files.

Two formats, both plain tensors and Python values (``weights_only`` loading):

- the **checkpoint** of a run (``checkpoint.pt``): everything a resumed run
  needs to replay the uninterrupted one exactly (weights, heads, optimiser,
  schedule, scaler, run state, RNG states) plus its last evaluation;
- the **weights files** written after a run with ``export = true``
  (``facegate-mfn.pt``, ``facegate-mfn.folded.pt``):
  ``{"net_config", "state_dict", "folded", "step", "sha256_onnx"}``.

Both are read here, inside :mod:`facegate.models` (``init_from``,
``train eval``): the training side never needs :mod:`facegate.export` to read
its own files.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from facegate.edge.atomic import atomic_write

from .network import BinaryHead, FaceEmbeddingNet, NetConfig, fold_batchnorm, net_config_from_dict
from .recipe import TrainConfig, TrainError, expand_path, net_config_to_dict

if TYPE_CHECKING:
    from .objective import LrSchedule, TrainModel

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
BUNDLE_NAME = "facegate-mfn"  # the network's name: its weights files and bundles


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    epoch_step: int = 0  # steps done within the current epoch
    step: int = 0  # optimizer steps done in all
    seconds: float = 0.0  # training time (no evaluation, no checkpoint writing)
    eval_step: int = -1  # step of the last evaluation
    stop_reason: str = ""


# --- RNG ---------------------------------------------------------------------------------------
def rng_states() -> dict[str, Any]:
    """The global RNG states as tensors and plain values (numpy's key as int64: ``weights_only`` loads it)."""
    np_state = np.random.get_state(legacy=False)
    out = {"torch": torch.get_rng_state(), "python": random.getstate(),
           "numpy": {"bit_generator": np_state["bit_generator"],
                     "key": torch.from_numpy(np.asarray(np_state["state"]["key"]).astype(np.int64)),
                     "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                     "gauss": float(np_state["gauss"])}}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    n = s["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"], "has_gauss": n["has_gauss"], "gauss": n["gauss"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]}})
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# --- the run's checkpoint ---------------------------------------------------------------------------
def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` that never leaves half a checkpoint (see :mod:`facegate.edge.atomic`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def _heads(model: TrainModel) -> dict[str, torch.Tensor]:
    """The training-only heads' tensors (everything but the embedding network)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("net.")}


def save_checkpoint(path: Path, cfg: TrainConfig, net_cfg: NetConfig, model: TrainModel,
                    optimizer: torch.optim.Optimizer, schedule: LrSchedule, scaler: torch.amp.GradScaler,
                    state: TrainState, report: dict[str, Any] | None, world_size: int) -> None:
    atomic_save({
        "format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "net_config": net_config_to_dict(net_cfg),
        "model": {"net": model.net.state_dict(), "heads": _heads(model)},
        "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(), "scaler": scaler.state_dict(),
        "state": dataclasses.asdict(state), "rng": rng_states(), "eval": report,
        "world_size": world_size,
    }, path)


def restore_checkpoint(ckpt: dict[str, Any], where: Path, model: TrainModel, optimizer: torch.optim.Optimizer,
                       schedule: LrSchedule, scaler: torch.amp.GradScaler) -> tuple[TrainState, dict[str, Any] | None]:
    """Load ``ckpt`` into the run's objects and the global RNGs; returns its run state and last report."""
    heads = _heads(model)
    missing = set(heads) - set(ckpt["model"]["heads"])
    if missing:
        raise TrainError(f"{where}: the checkpoint lacks {sorted(missing)} (loss weights changed?)")
    model.load_state_dict({**{f"net.{k}": v for k, v in ckpt["model"]["net"].items()},
                           **{k: ckpt["model"]["heads"][k] for k in heads}})
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    set_rng_states(ckpt["rng"])
    return TrainState(**ckpt["state"]), ckpt.get("eval")


def _checkpoint_file(path: str | Path) -> Path:
    path = expand_path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise TrainError(f"{path}: no checkpoint")
    return path


def _torch_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises pickle / zip / runtime errors alike
        raise TrainError(f"{path}: not a torch checkpoint ({exc})") from None


def _is_training_checkpoint(obj: Any) -> bool:
    return isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint of :func:`facegate.models.loop.train` (a run folder or its ``checkpoint.pt``)."""
    path = _checkpoint_file(path)
    ckpt = _torch_load(path, map_location)
    if not _is_training_checkpoint(ckpt):
        found = ckpt.get("format") if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise TrainError(f"{path}: not a facegate training checkpoint (format {found!r})")
    return ckpt


# --- the network's weights ---------------------------------------------------------------------
def _net_config(raw: Any, where: Path) -> NetConfig:
    try:
        return net_config_from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise TrainError(f"{where}: net_config: {exc}") from None


def read_net_weights(path: str | Path) -> tuple[NetConfig, dict[str, torch.Tensor], bool]:
    """``(net_config, state_dict, folded)`` of a run folder, its ``checkpoint.pt`` or a weights file."""
    path = _checkpoint_file(path)
    obj = _torch_load(path)
    if _is_training_checkpoint(obj):
        return _net_config(obj["net_config"], path), dict(obj["model"]["net"]), False
    if isinstance(obj, Mapping) and "net_config" in obj and isinstance(obj.get("state_dict"), Mapping):
        state = dict(obj["state_dict"])
        folded = obj.get("folded")
        return _net_config(obj["net_config"], path), state, is_folded(state) if folded is None else bool(folded)
    raise TrainError(f"{path}: neither a training checkpoint nor a weights file ({BUNDLE_NAME}.pt)")


def is_folded(state: Mapping[str, Any]) -> bool:
    """Whether a state_dict has BatchNorm folded into its convolutions (it then has no running statistics)."""
    return not any(k.endswith("running_mean") for k in state)


def build_net(cfg: NetConfig, state: Mapping[str, torch.Tensor], folded: bool) -> FaceEmbeddingNet:
    """The network of ``cfg`` in eval mode with ``state`` loaded (BatchNorm folded first if ``folded``)."""
    net = FaceEmbeddingNet(cfg)
    target = fold_batchnorm(net) if folded else net
    try:
        target.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise TrainError(f"the state_dict does not fit NetConfig {cfg} ({first[0] if first else exc}...)") from None
    return target.eval()


def initial_weights(source: str, net_cfg: NetConfig) -> dict[str, torch.Tensor]:
    """The unfolded state_dict of ``source`` for ``init_from``, refused if it is another architecture."""
    try:
        cfg, state, folded = read_net_weights(source)
    except TrainError as exc:
        raise TrainError(f"init_from: {exc}") from None
    if folded:
        raise TrainError(f"init_from {source}: BatchNorm is folded into these weights; give the unfolded .pt")
    if cfg != net_cfg:
        raise TrainError(f"init_from {source}: its network {cfg} is not the recipe's {net_cfg}")
    return state


def net_from_checkpoint(ckpt: dict[str, Any]) -> FaceEmbeddingNet:
    """The checkpoint's network in eval mode (``train eval``)."""
    try:
        cfg = net_config_from_dict(ckpt["net_config"])
    except ValueError as exc:
        raise TrainError(f"checkpoint net_config: {exc}") from None
    return build_net(cfg, ckpt["model"]["net"], folded=False)


def binary_head_from_checkpoint(ckpt: dict[str, Any]) -> BinaryHead | None:
    prefix = "binary_head."
    state = {k[len(prefix):]: v for k, v in ckpt["model"]["heads"].items() if k.startswith(prefix)}
    if not state:
        return None
    head = BinaryHead(int(state["linear.weight"].shape[1]))
    head.load_state_dict(state)
    return head


def save_weights(net: FaceEmbeddingNet, folder: Path, **meta: Any) -> list[Path]:
    """``facegate-mfn.pt`` (unfolded: ``init_from`` continues from it) and ``facegate-mfn.folded.pt``
    (BatchNorm folded: inference) in ``folder``; ``meta`` (step, checksums) is stored beside the weights."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for folded, path in ((False, folder / f"{BUNDLE_NAME}.pt"), (True, folder / f"{BUNDLE_NAME}.folded.pt")):
        atomic_save({"net_config": net_config_to_dict(net.config), **meta, "folded": folded,
                     "state_dict": (fold_batchnorm(net) if folded else net).state_dict()}, path)
        written.append(path)
    return written


def load_weights(path: str | Path) -> FaceEmbeddingNet:
    """A network (eval mode) from :func:`save_weights`' ``.pt`` files (folded or not), or a run's checkpoint."""
    cfg, state, folded = read_net_weights(path)
    try:
        return build_net(cfg, state, folded)
    except TrainError as exc:
        raise TrainError(f"{path}: {exc}") from None
