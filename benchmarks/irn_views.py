"""Which crop suits FaceNet's network: LFW-half of the imported PyTorch FaceNet on several views of split B.

Every view is cut from the same MTCNN detection (the eval set's landmarks and
box). Prints one JSON line per view.

    python benchmarks/irn_views.py --eval-set ../cache/eval_lfw_b --views box:160:0.125 align5:160:1.0
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from facegate.edge.embed.bundle import InputSpec
from facegate.models.cli import parse_view
from facegate.models.data import preprocess
from facegate.models.evalset import eval_report, load_eval_set
from facegate.models.facenet_import import load_facenet
from facegate.models.irn import IRNConfig, InceptionResNetV1, select_blocks


@torch.no_grad()
def embed(net: torch.nn.Module, crops: np.ndarray, rows: np.ndarray, size: int, batch: int = 64) -> np.ndarray:
    spec = InputSpec(size=size, colour="rgb", layout="nchw", mean=(127.5,), std=(128.0,))
    out = np.zeros((len(crops), net.embedding_dim), np.float32)
    for s in range(0, len(rows), batch):
        r = rows[s:s + batch]
        out[r] = net(torch.from_numpy(preprocess(crops[r], spec))).numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval-set", required=True)
    ap.add_argument("--views", nargs="+", default=["box:160:0.125", "align5:160:1.0"])
    ap.add_argument("--input-size", type=int, default=0, help="resize each view to this network input (0: the view's)")
    ap.add_argument("--repeats", default="5,10,5")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    es = load_eval_set(args.eval_set)
    full = load_facenet()
    rows = np.flatnonzero(es.ok)
    for text in args.views:
        view = parse_view(text)
        size = args.input_size or view.size
        cfg = IRNConfig(repeats=tuple(int(r) for r in args.repeats.split(",")), input_size=size)
        net = InceptionResNetV1(cfg)
        net.load_state_dict(select_blocks(full.state_dict(), cfg))
        net.eval()
        t0 = time.time()
        crops = es.views(view)
        if size != view.size:
            import cv2
            crops = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])
        vec = embed(net, crops, rows, size)
        rep = eval_report(es, vec, f"facenet-torch[{text}]")
        keep = ("accuracy_mean", "accuracy_std", "auc", "eer", "tar_at_far_1e-3", "tar_at_far_1e-4")
        print(json.dumps({"view": text, "input_size": size, "repeats": cfg.repeats,
                          **{k: rep.get(k) for k in keep}, "seconds": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
