"""The ladder table (README.md, models/MODEL_CARD.md) from bundle manifests and one `facegate bench --json` run.

Each row: the rung's parameters and GFLOPs (from its manifest), INT8 ms per face on one core (the bench run's
``embed_ms`` at 1 thread), and its own full-pipeline LFW-half figures (``evaluation.pipeline``, written by
``facegate eval lfw --record``). Rows without a bench figure or pipeline figures say so.

    facegate bench --json --threads 1 --embedders facenet,facegate-irn,facegate-irn-r112 > bench.jsonl
    python benchmarks/ladder_table.py --bench bench.jsonl facegate-irn-onnx-int8 facegate-irn-r112-onnx-int8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facegate.edge.embed import resolve_bundle
from facegate.edge.embed.bundle import load_bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", help="bundle folders or shipped names")
    ap.add_argument("--bench", type=Path, default=None, help="facegate bench --json output (JSON lines)")
    args = ap.parse_args()
    embed_ms: dict[str, float] = {}
    if args.bench:
        for line in args.bench.read_text().splitlines():
            row = json.loads(line) if line.strip().startswith("{") else {}
            if row.get("threads") == 1 and "embed_ms" in row:
                embed_ms[str(row.get("model_id", row["embedder"]))] = row["embed_ms"]
                embed_ms[row["embedder"]] = row["embed_ms"]
    print("| bundle | parameters | GFLOPs | input | INT8 ms / face (1 core) | accuracy | TAR @ FAR 1e-3 | "
          "TAR @ FAR 1e-4 | parity (cosine mean) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.bundles:
        folder = resolve_bundle(name)
        if folder is None:
            raise SystemExit(f"{name}: not a bundle")
        m, _ = load_bundle(folder)
        net = m.evaluation.get("network", {})
        pipe = m.evaluation.get("pipeline", {})
        ms = embed_ms.get(m.model_id, embed_ms.get(name, embed_ms.get(m.name)))
        acc = f"{100 * pipe['accuracy_mean']:.2f} ± {100 * pipe['accuracy_std']:.2f} %" if pipe else "not run"
        size = f"{net['parameters'] / 1e6:.2f} M | {net['gflops']:.2f}" if net else "not recorded | not recorded"
        print(f"| {m.name} | {size} | "
              f"{m.input.crop.kind} {m.input.size} px | {f'{ms:.2f}' if ms else 'not run'} | {acc} | "
              f"{pipe.get('tar_at_far_1e-3', float('nan')):.3f} | {pipe.get('tar_at_far_1e-4', float('nan')):.3f} | "
              f"{m.evaluation.get('parity', {}).get('cosine_mean', float('nan')):.4f} |")


if __name__ == "__main__":
    main()
