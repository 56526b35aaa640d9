"""Training speed of one full step (data, augmentation, forward, losses, backward, AdamW) on random crops.

    python benchmarks/train_speed.py [--threads 1] [--steps 25] [--p 16 --k 4] [--extra 0] [--width 1.0]
                                     [--no-amp] [--no-channels-last]

Builds a throwaway cache of random 112x112 crops with random teacher
embeddings, trains the default network with the default recipe's losses
(batch-hard, dlib + FaceNet similarity distillation, binary head) for
``--steps`` steps and prints one JSON row: steps/s and images/s measured
after the first logging window (warm-up excluded).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--window", type=int, default=5, help="steps per measurement window")
    ap.add_argument("--p", type=int, default=16)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--extra", type=int, default=0, help="distill_extra_batch")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--no-amp", action="store_true", help="full fp32 (no bf16 / fp16 autocast)")
    ap.add_argument("--no-channels-last", action="store_true", help="NCHW tensors")
    args = ap.parse_args(argv)

    import torch

    from facegate.models.loop import train
    from facegate.models.prepare import write_cache
    from facegate.models.recipe import TrainConfig

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    people = max(2 * args.p, 32)
    n = people * args.k + 64
    persons = [f"p{i}" for i in range(people) for _ in range(args.k)] + [f"solo{i}" for i in range(64)]
    crops = rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
    teachers = {name: rng.standard_normal((n, dim)).astype(np.float32) for name, dim in (("dlib", 128), ("facenet", 512))}
    with tempfile.TemporaryDirectory() as tmp:
        cache = write_cache(Path(tmp) / "cache", crops, persons, teachers=teachers)
        cfg = TrainConfig(cache=str(cache), out=str(Path(tmp) / "run"), p=args.p, k=args.k, epochs=1000,
                          max_steps=args.steps, threads=args.threads, log_every=args.window, export=False,
                          distill_dlib=1.0, distill_facenet=2.0, binary_head=0.5, distill_extra_batch=args.extra,
                          augment=not args.no_augment, amp=not args.no_amp,
                          channels_last=not args.no_channels_last, net={"width": args.width} if args.width != 1.0 else {})
        t0 = time.time()
        res = train(cfg, progress=False)
        wall = time.time() - t0
        rows = [json.loads(x) for x in (res.out / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in rows if r["kind"] == "train"][1:] or [r for r in rows if r["kind"] == "train"]
    sps = float(np.median([r["steps_per_s"] for r in windows]))
    from facegate.models.objective import autocast_dtype

    amp = autocast_dtype(torch.device("cpu")) if not args.no_amp else None
    print(json.dumps({"threads": args.threads, "p": args.p, "k": args.k, "extra": args.extra, "width": args.width,
                      "autocast": str(amp).removeprefix("torch.") if amp else "off",
                      "channels_last": not args.no_channels_last,
                      "batch": args.p * args.k + args.extra, "steps": res.state.step,
                      "steps_per_s": round(sps, 3), "images_per_s": round(sps * (args.p * args.k + args.extra), 1),
                      "seconds_per_step": round(1 / sps, 3), "wall_seconds": round(wall, 1),
                      "params": sum(p.numel() for p in res.net.parameters())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
