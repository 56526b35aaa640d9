"""LFW-half of two teachers fused: the ceiling of distilling a student from both.

Each teacher's embedding of every split-B face comes from ``facegate eval lfw``'s
cache (run ``facegate eval lfw --embedder facenet`` and ``--embedder dlib``
first); the fused embedding is both unit vectors side by side, scaled so the
fused cosine is the mean of the two cosines. Prints one JSON line per teacher
and one for the fusion, all through the same arithmetic as ``facegate eval lfw``.

    python benchmarks/fused_teachers.py --embedders facenet dlib
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from facegate.edge.embed import create_embedder
from facegate.edge.eval.evaluate import (EVAL_MIN_FACE, EmbeddingTable, cache_name, cache_root, embed_paths,
                                         lfw_half_report)
from facegate.edge.eval.lfw import EVAL_FOLDS, load_protocol

KEYS = ("accuracy_mean", "accuracy_std", "auc", "eer", "tar_at_far_1e-3", "tar_at_far_1e-4", "failures_to_acquire")


def _table(name: str, paths: list[str]) -> EmbeddingTable:
    probe = create_embedder(name, threads=1)
    model_id, crop, dim = probe.model_id, probe.crop, probe.dim
    probe.close()
    cache = cache_root() / cache_name(model_id, crop, EVAL_MIN_FACE)
    if not cache.is_file():
        raise SystemExit(f"no cached embeddings for {name} ({cache}): run facegate eval lfw --embedder {name} first")
    return embed_paths(name, model_id, dim, paths, cache, EVAL_MIN_FACE, progress=False)  # read from the cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedders", nargs=2, default=["facenet", "dlib"])
    args = ap.parse_args()
    proto = load_protocol()
    paths_b = proto.images_of(sorted(proto.split_b))
    people_b = [p.parent.name for p in paths_b]
    pairs = proto.pair_paths(EVAL_FOLDS)
    paths = [str(p) for p in paths_b]
    tables = [_table(name, paths) for name in args.embedders]
    for name, t in zip(args.embedders, tables):
        rep = lfw_half_report(t, people_b, pairs)
        print(json.dumps({"embedder": name, "model_id": t.model_id, **{k: rep[k] for k in KEYS}}))
    unit = [t.vectors / np.maximum(np.linalg.norm(t.vectors, axis=1, keepdims=True), 1e-12) for t in tables]
    fused = np.concatenate(unit, axis=1) / np.sqrt(2.0)
    both = EmbeddingTable(paths, fused.astype(np.float32), tables[0].ok & tables[1].ok,
                          "+".join(t.model_id for t in tables))
    rep = lfw_half_report(both, people_b, pairs)
    print(json.dumps({"embedder": "+".join(args.embedders), "fusion": "mean cosine (unit vectors side by side)",
                      **{k: rep[k] for k in KEYS}}))


if __name__ == "__main__":
    main()
