"""Identification false-match rate against gallery size, measured on LFW split B; JSON out.

    nice python benchmarks/ident_fmr.py [--embedder NAME] [--trials 20] [--out ident.json]

Why: a bundle's thresholds are pair thresholds (one stranger against one
template). The door compares a stranger with everybody enrolled, so with N
people the chance that *someone* matches is about N times the pair rate. This
measures it, on the LFW-half protocol's split B (people never trained on):

1. the pair-FMR curve over all impostor pairs of split B (about 19.7 million),
   at FMRs from 1e-3 down to 1e-6;
2. for galleries of N people (one template each, the first image of N random
   people), the fraction of strangers (one image of every other person) that
   match somebody, and the fraction of enrolled people whose *other* images are
   accepted as themselves (genuine identification rate), at the model's pair
   default and at the door's operating threshold (operating_threshold: the pair
   threshold for ``identification_fmr / N``, from the bundle's two measured
   points).

Needs /work/shared/data/lfw (or ``--lfw``) and the embeddings of split B, which
``facegate eval lfw`` caches; without the cache they are computed first (an
hour on two cores). Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

FMRS = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)


def load_table(embedder: str, lfw: str | None):
    from facegate.edge.embed import create_embedder
    from facegate.edge.eval.evaluate import EVAL_MIN_FACE, cache_name, cache_root, embed_paths
    from facegate.edge.eval.lfw import load_protocol

    proto = load_protocol(lfw)
    probe = create_embedder(embedder)
    model_id, dim, crop, thresholds = probe.model_id, probe.dim, probe.crop, probe.thresholds
    probe.close()
    paths = [str(p) for p in proto.images_of(sorted(proto.split_b))]
    cache = cache_root() / cache_name(model_id, crop, EVAL_MIN_FACE)
    legacy = cache_root() / f"lfw-{model_id}-min{EVAL_MIN_FACE}.npz"  # the name before crops were in it
    if not cache.is_file() and legacy.is_file():
        cache = legacy
    table = embed_paths(embedder, model_id, dim, paths, cache, EVAL_MIN_FACE, 1, True)
    idx = table.index()
    rows = np.array([idx[p] for p in paths])
    ok = table.ok[rows]
    vectors = table.vectors[rows][ok]
    people = np.array([Path(p).parent.name for p in paths])[ok]
    return model_id, thresholds, vectors, people


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", default=None)
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--sizes", default="1,10,46,100,300")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--target", type=float, default=1e-3, help="identification FMR the door aims at")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from facegate.edge.embed import DEFAULT_EMBEDDER
    from facegate.edge.eval.evaluate import EmbeddingTable, impostor_distances
    from facegate.edge.operating_threshold import operating_threshold, strong_threshold

    embedder = args.embedder or DEFAULT_EMBEDDER
    model_id, thresholds, vectors, people = load_table(embedder, args.lfw)
    impostors = impostor_distances(EmbeddingTable(list(people), vectors, np.ones(len(people), bool), model_id),
                                   list(people))
    impostors.sort()
    curve = {f"{f:.0e}": float(impostors[max(0, int(f * len(impostors)) - 1)]) for f in FMRS}

    names, first = np.unique(people, return_index=True)
    rng = np.random.default_rng(args.seed)
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        op = operating_threshold(None, thresholds, n, args.target)
        levels = {"pair_default": thresholds.default, "operating": op,
                  "strong": strong_threshold(thresholds, n, args.target, op)}
        fm = {k: [] for k in levels}
        gen = {k: [] for k in levels}
        for _ in range(args.trials):
            chosen = rng.choice(len(names), size=n, replace=False)
            enrolled = set(names[chosen].tolist())
            gallery = vectors[first[chosen]]
            is_template = np.zeros(len(people), bool)
            is_template[first[chosen]] = True
            strangers = np.array([i for i in first if people[i] not in enrolled])
            d_str = np.sqrt(np.maximum(0.0, 2 - 2 * vectors[strangers] @ gallery.T)).min(axis=1)
            probes = np.array([i for i in range(len(people)) if people[i] in enrolled and not is_template[i]])
            if len(probes):
                d_gen = np.sqrt(np.maximum(0.0, 2 - 2 * vectors[probes] @ gallery.T))
                best = d_gen.argmin(axis=1)
                right = names[chosen][best] == people[probes]
            for k, t in levels.items():
                fm[k].append(float(np.mean(d_str <= t)))
                if len(probes):
                    gen[k].append(float(np.mean(right & (d_gen.min(axis=1) <= t))))
        results.append({
            "gallery_size": n,
            "strangers_per_trial": int(len(strangers)),
            "thresholds": {k: round(v, 4) for k, v in levels.items()},
            "identification_fmr": {k: float(np.mean(v)) for k, v in fm.items()},
            "genuine_identification_rate": {k: (float(np.mean(v)) if v else None) for k, v in gen.items()},
        })
    report = {"benchmark": "ident_fmr", "model_id": model_id, "protocol": "lfw-half split B",
              "impostor_pairs": int(len(impostors)), "images": int(len(people)), "people": int(len(names)),
              "target_identification_fmr": args.target, "trials": args.trials,
              "pair_threshold_by_fmr": curve, "bundle_by_fmr": thresholds.by_fmr, "galleries": results}
    text = json.dumps(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
