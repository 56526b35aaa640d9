"""Size, per-face latency and PyTorch parity of the four export artifacts (ONNX/TFLite x fp32/INT8).

    python benchmarks/export_artifacts.py --calib ../cache/train [--checkpoint CKPT] [--out DIR]
        [--threads 1] [--calls 100] [--calib-count 300] [--parity-count 500]

Without ``--checkpoint`` the default FaceEmbeddingNet is used with random
weights and BatchNorm statistics measured on the calibration source (enough
for speed and size; its INT8 parity says nothing about a trained network's,
so the INT8 parity floor is not enforced then). Latency: median over
``--calls`` single-face ``embed_prepared`` calls (batch 1) after 10 warm-up
calls, ``--threads`` runtime threads. One JSON row per artifact.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def random_net(crops: np.ndarray):
    """Default network, random weights, BatchNorm statistics from ``crops`` (body variances x1.5)."""
    import torch

    from facegate.models.data import preprocess
    from facegate.models.network import FaceEmbeddingNet

    torch.manual_seed(0)
    net = FaceEmbeddingNet()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        net.train()
        for k in range(0, len(crops), 32):
            net(torch.from_numpy(preprocess(crops[k:k + 32])))
        for m in bns[:-1]:
            m.running_var *= 1.5
        net.eval()
        x = torch.from_numpy(preprocess(crops[:128]))
        f = net.embedding[0](net.gdc(net.features(x)).flatten(1))
        bns[-1].running_mean.copy_(f.mean(0))
        bns[-1].running_var.copy_(f.var(0))
    return net


def latency_ms(folder: Path, crops: np.ndarray, threads: int, calls: int) -> float:
    from facegate.edge.embed import create_embedder

    emb = create_embedder(str(folder), threads=threads)
    for i in range(10):
        emb.embed_prepared([crops[i % len(crops)]])
    times = []
    for i in range(calls):
        c = crops[i % len(crops)]
        t = time.perf_counter()
        emb.embed_prepared([c])
        times.append((time.perf_counter() - t) * 1000)
    emb.close()
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=Path, required=True, help="prepared cache / eval set / .npy of crops")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="bundle folder (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--calib-count", type=int, default=300)
    ap.add_argument("--parity-count", type=int, default=500)
    ap.add_argument("--formats", default="onnx,tflite")
    args = ap.parse_args(argv)

    import torch

    from facegate.edge.embed.base import Thresholds
    from facegate.export import bundles
    from facegate.export.crops import calibration_and_parity, load_crops

    torch.set_num_threads(args.threads)
    calib, check = calibration_and_parity(args.calib, args.calib_count, args.parity_count)
    if args.checkpoint:
        from facegate.export.checkpoint import load_checkpoint

        net, extras = load_checkpoint(args.checkpoint)
        thresholds = extras["thresholds"] or Thresholds(1.0, source="benchmark placeholder")
        floors = bundles.MIN_COSINE
    else:
        net = random_net(load_crops(args.calib, 256, seed=1))
        thresholds = Thresholds(1.0, source="benchmark placeholder")
        floors = {**bundles.MIN_COSINE, "int8": ("cosine_mean", -1.0)}  # random weights: INT8 parity says nothing
    info = bundles.BundleInfo(thresholds=thresholds, name="bench", calibration_source=str(args.calib),
                              parity_source=str(args.calib))
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for fmt in args.formats.split(","):
            t = time.perf_counter()
            run = bundles.export_onnx_bundles if fmt == "onnx" else bundles.export_tflite_bundles
            made = run(net, out, calib, check, info, threads=args.threads, min_cosine=floors)
            seconds = time.perf_counter() - t
            for b in made:
                row = {"artifact": b.folder.name, "model_mb": b.model_mb,
                       "latency_ms": round(latency_ms(b.folder, check, args.threads, args.calls), 3),
                       "threads": args.threads, "export_s_both": round(seconds, 1),
                       **{f"parity_{k}": v for k, v in b.parity.items() if k.startswith(("cosine", "distance"))}}
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
