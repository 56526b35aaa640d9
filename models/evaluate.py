"""A torch network's LFW-half figures on the cached split-B crops (:mod:`facegate.models.evalset`).

The figures come from the same :func:`facegate.models.evalset.eval_report` as
the door's own evaluation, so a checkpoint's numbers and its bundle's agree.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import BUNDLE_NAME, binary_head_from_checkpoint, load_checkpoint, net_from_checkpoint
from .data import preprocess
from .evalset import EvalSet, binary_head_report, eval_report, load_eval_set
from .network import BinaryHead
from .recipe import TrainError, expand_path


@torch.no_grad()
def embed_crops(net: nn.Module, crops: np.ndarray, batch_size: int = 128,
                device: torch.device | str = "cpu", rows: np.ndarray | None = None) -> np.ndarray:
    """(N, dim) float32 embeddings of BGR uint8 crops, network in eval mode (restored afterwards)."""
    was_training = net.training
    net.eval()
    rows = np.arange(len(crops)) if rows is None else np.asarray(rows)
    dim = int(getattr(net, "embedding_dim", 128))
    out = np.zeros((len(crops), dim), np.float32)
    try:
        for s in range(0, len(rows), batch_size):
            r = rows[s:s + batch_size]
            x = torch.from_numpy(preprocess(np.asarray(crops[r]))).to(device)
            out[r] = net(x).float().cpu().numpy()
    finally:
        net.train(was_training)
    return out


def evaluate_model(net: nn.Module, eval_set: EvalSet, binary_head: BinaryHead | None = None,
                   model_id: str = BUNDLE_NAME, batch_size: int = 128,
                   device: torch.device | str = "cpu") -> dict[str, Any]:
    """The LFW-half report of a torch network on the cached split-B crops (+ the head's figures)."""
    t0 = time.time()
    vectors = embed_crops(net, eval_set.crops, batch_size, device, rows=np.flatnonzero(eval_set.ok))
    report = eval_report(eval_set, vectors, model_id)
    if binary_head is not None:
        w = binary_head.linear.weight.detach().cpu().numpy().reshape(-1)
        report.update(binary_head_report(eval_set, vectors, w, float(binary_head.linear.bias.detach().cpu()[0])))
    report["eval_seconds"] = round(time.time() - t0, 1)
    return json.loads(json.dumps(report))  # plain Python numbers: checkpoints load with weights_only


def summary(report: dict[str, Any]) -> str:
    s = (f"acc {100 * report['accuracy_mean']:.2f}+-{100 * report['accuracy_std']:.2f}% auc {report['auc']:.4f} "
         f"eer {100 * report['eer']:.2f}% tar@1e-3 {report['tar_at_far_1e-3']:.3f} "
         f"tar@1e-4 {report['tar_at_far_1e-4']:.3f}")
    if "head_accuracy_mean" in report:
        s += f" head acc {100 * report['head_accuracy_mean']:.2f}%"
    return s


def evaluate_checkpoint(checkpoint: str | Path, eval_cache: str | Path | None = None,
                        batch_size: int = 128, threads: int | None = None) -> dict[str, Any]:
    """The LFW-half report of a checkpoint's network (``eval_cache`` defaults to its run's)."""
    ckpt = load_checkpoint(checkpoint)
    if threads:
        torch.set_num_threads(threads)
    folder = eval_cache or ckpt["config"].get("eval_cache")
    if not folder:
        raise TrainError("no evaluation set: pass --eval-cache (build one with facegate train eval-set)")
    eval_set = load_eval_set(expand_path(folder))
    step = ckpt["state"]["step"]
    return evaluate_model(net_from_checkpoint(ckpt), eval_set, binary_head_from_checkpoint(ckpt),
                          f"{BUNDLE_NAME}-step{step}", batch_size)


